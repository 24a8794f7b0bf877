"""Redis or the database unreachable: what keeps working and what fails closed."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from tests.support.app_harness import PASSWORD, AppHarness
from tests.support.service import free_port


async def test_redis_down_everything_works_from_postgresql(
    make_harness: Callable[..., Any], harness: AppHarness
) -> None:
    # Users and tokens made while Redis is up, then an app whose Redis port is closed.
    me, headers = await harness.user_with_token("sturdy@example.com")
    tokens = await harness.login("sturdy@example.com")
    other = await harness.login("sturdy@example.com")
    dead: AppHarness = await make_harness(
        clean=False, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_BREAKER_FAILURES=2
    )
    # Session state comes from PostgreSQL: reads, refresh, login and logout all work.
    for _ in range(3):
        read = await dead.client.get(f"/api/v1/users/{me['id']}", headers=headers)
        assert read.status_code == 200, read.text
    refresh = await dead.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 200, refresh.text
    login = await dead.client.post(
        "/api/v1/auth/token", data={"username": "sturdy@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    other_headers = {"Authorization": f"Bearer {other['access_token']}"}
    logout = await dead.client.post("/api/v1/auth/logout", headers=other_headers)
    assert logout.status_code == 204
    # The logout holds on this app and on the one whose Redis is fine.
    for app in (dead, harness):
        gone = await app.client.get("/api/v1/users/me", headers=other_headers)
        assert gone.status_code == 401, gone.text
    created = await dead.client.post(
        "/api/v1/users", json={"email": "newbie@example.com", "password": "password-123"}
    )
    assert created.status_code == 201
    ready = await dead.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == "down"


async def test_cache_outage_does_not_fail_reads(
    make_harness: Callable[..., Any], harness: AppHarness
) -> None:
    """The breaker open (Redis skipped) or the cache off: reads come from the database."""
    me, headers = await harness.user_with_token("cacheless@example.com")
    resources = harness.app.state.resources
    for _ in range(5):
        resources.redis.breaker.record_failure()
    assert resources.redis.breaker.is_open
    try:
        response = await harness.client.get(f"/api/v1/users/{me['id']}", headers=headers)
        assert response.status_code == 200, response.text
    finally:
        resources.redis.breaker.record_success()
    bypass = await make_harness(clean=False, CACHE_ENABLED=False)
    response = await bypass.client.get(f"/api/v1/users/{me['id']}", headers=headers)
    assert response.status_code == 200


async def test_database_down_readiness_fails_liveness_holds(
    make_harness: Callable[..., Any],
) -> None:
    dead: AppHarness = await make_harness(
        clean=False,
        DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing",
        DB_CONNECT_TIMEOUT=1,
    )
    assert (await dead.client.get("/livez")).status_code == 200
    ready = await dead.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "down"
    signup = await dead.client.post(
        "/api/v1/users", json={"email": "nodb@example.com", "password": "password-123"}
    )
    assert signup.status_code == 503
    assert signup.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in signup.text


async def test_readiness_checks_run_side_by_side(make_harness: Callable[..., Any]) -> None:
    """A database and a Redis that both hang cost one readiness timeout, not the sum of two:
    the probe's timeout is sized for one."""
    # Accepts connections in the kernel's backlog and never answers: both clients hang.
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        port = silent.getsockname()[1]
        hung: AppHarness = await make_harness(
            clean=False,
            DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing",
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            READINESS_TIMEOUT=1,
            DB_CONNECT_TIMEOUT=10,
            REDIS_CONNECT_TIMEOUT=10,
            REDIS_SOCKET_TIMEOUT=10,
        )
        started = time.monotonic()
        ready = await hung.client.get("/readyz")
        elapsed = time.monotonic() - started
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "down", "schema": "unknown", "redis": "down"}
    assert 0.9 <= elapsed < 1.8, elapsed
