"""PgBouncer with its stock configuration in transaction mode: nothing it refuses is sent, the
statement deadline still holds, and a refusal at connect is a 503 whose cause is logged."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text

from tests.faults.tools import database_dsn
from tests.ha.conftest import PGBOUNCER_DATABASE
from tests.ha.pgbouncer import PgBouncer
from tests.support.app_harness import AppHarness
from tests.support.service import REPO

PROBLEM = "application/problem+json"


# A fresh interpreter makes one request with the app over ASGI and prints what it logged: the
# app writes its log lines straight to the stdout it found first, which a test cannot swap.
_ONE_REQUEST = """
import asyncio, httpx
from app.main import create_app
async def main():
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"email": "logged@example.com", "password": "password-1234"}
            response = await client.post("/api/v1/users", json=body)
    print("STATUS", response.status_code)
asyncio.run(main())
"""


def _logged_request(env: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, "-c", _ONE_REQUEST],
        env={**os.environ, "APP_ENV": "test", "LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    status = 0
    events = []
    for line in done.stdout.splitlines():
        if line.startswith("STATUS "):
            status = int(line.split()[1])
        elif line.startswith("{"):
            events.append(orjson.loads(line))
    assert status, done.stdout[-2000:] + done.stderr[-2000:]
    return status, events


async def test_stock_pgbouncer_accepts_the_service_in_pgbouncer_mode(
    make_harness: Callable[..., Any], pgbouncer: PgBouncer
) -> None:
    harness: AppHarness = await make_harness()
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    signup = await harness.client.post(
        "/api/v1/users", json={"email": "bouncer@example.com", "password": "password-1234"}
    )
    assert signup.status_code == 201, signup.text
    assert "unsupported startup parameter" not in pgbouncer.logs()


async def test_refused_connection_is_a_503_with_the_cause_logged(
    make_harness: Callable[..., Any], pgbouncer: PgBouncer
) -> None:
    """Without PgBouncer mode the service sends statement_timeout at startup, which a stock
    PgBouncer refuses: every database request must be a 503 problem, never an unhandled 500,
    the log must say why, and readiness must say why."""
    harness: AppHarness = await make_harness(clean=False, DB_PGBOUNCER=False)
    signup = await harness.client.post(
        "/api/v1/users", json={"email": "refused@example.com", "password": "password-1234"}
    )
    assert signup.status_code == 503, signup.text
    assert signup.headers["content-type"] == PROBLEM
    assert signup.headers["retry-after"]
    assert signup.json()["type"].endswith("/dependency-unavailable")
    assert "statement_timeout" not in signup.text  # the cause goes to the log, not the client

    status, events = await asyncio.to_thread(
        _logged_request,
        {
            "DATABASE_URL": pgbouncer.url(PGBOUNCER_DATABASE),
            "DB_PGBOUNCER": "false",
            "REDIS_URL": harness.app.state.settings.redis_dsn,
        },
    )
    assert status == 503
    faults = [event for event in events if event.get("event") == "database_error"]
    assert faults, events
    assert "unsupported startup parameter" in faults[-1]["cause"], faults[-1]
    assert not [event for event in events if event.get("level") == "error"], events

    ready = await harness.client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["database"] == "down"
    assert "unsupported startup parameter" in body["reasons"]["database"], body


async def test_wrong_password_at_the_pooler_is_a_503(
    make_harness: Callable[..., Any], pgbouncer: PgBouncer
) -> None:
    harness: AppHarness = await make_harness(
        clean=False, DATABASE_URL=pgbouncer.url(PGBOUNCER_DATABASE, password="wrong-password")
    )
    signup = await harness.client.post(
        "/api/v1/users", json={"email": "badauth@example.com", "password": "password-1234"}
    )
    assert signup.status_code == 503, signup.text
    assert signup.headers["content-type"] == PROBLEM
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 503
    assert "password" in ready.json()["reasons"]["database"]


async def test_statement_deadline_holds_per_transaction(make_harness: Callable[..., Any]) -> None:
    """No statement_timeout at startup, yet every transaction runs under it."""
    harness: AppHarness = await make_harness(DB_STATEMENT_TIMEOUT_MS=700)
    engine = harness.app.state.resources.engine
    for _ in range(3):  # whichever server connection pgbouncer hands out
        async with engine.connect() as connection:
            assert await connection.scalar(text("SHOW statement_timeout")) == "700ms"

    _, auth = await harness.user_with_token("deadline@example.com")
    me = (await harness.client.get("/api/v1/users/me", headers=auth)).json()
    locker = await asyncpg.connect(database_dsn(PGBOUNCER_DATABASE))
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        update = await harness.client.patch(
            f"/api/v1/users/{me['id']}", json={"full_name": "late"}, headers=auth
        )
        elapsed = time.monotonic() - started
        await transaction.rollback()
    finally:
        await locker.close()
    assert update.status_code == 504, update.text
    # The server's statement_timeout ended it, not the client's later deadline (1.7 s).
    assert "statement timeout" in update.json()["detail"]
    assert elapsed < 1.6, elapsed


async def test_concurrent_requests_share_few_server_connections(
    make_harness: Callable[..., Any], pgbouncer: PgBouncer
) -> None:
    """Many client connections over a server pool of two: prepared statements must never
    collide on a server connection another client used before."""
    harness: AppHarness = await make_harness(DB_POOL_SIZE=8, DB_MAX_OVERFLOW=0)
    _, auth = await harness.user_with_token("shared@example.com")

    async def one(index: int) -> int:
        response = await harness.client.post(
            "/api/v1/users",
            json={"email": f"many-{index}@example.com", "password": "password-1234"},
        )
        listed = await harness.client.get("/api/v1/users/me", headers=auth)
        return response.status_code * 1000 + listed.status_code

    results = await asyncio.gather(*(one(index) for index in range(24)))
    assert set(results) == {201200}, results
    assert "prepared statement" not in pgbouncer.logs()
