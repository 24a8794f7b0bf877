"""Redis or the database unreachable: what keeps working and what fails closed."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import AppHarness
from tests.support.service import free_port


async def test_redis_down_reads_work_and_token_changes_fail_closed(
    make_harness: Callable[..., Any], harness: AppHarness
) -> None:
    # Users and tokens made while Redis is up, then an app whose Redis port is closed.
    me, headers = await harness.user_with_token("sturdy@example.com")
    tokens = await harness.login("sturdy@example.com")
    dead: AppHarness = await make_harness(
        clean=False, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_BREAKER_FAILURES=2
    )
    # Revocation cannot be checked: authenticated reads fail closed with a clear 503.
    read = await dead.client.get(f"/api/v1/users/{me['id']}", headers=headers)
    assert read.status_code == 503
    assert "revocation" in read.json()["detail"]
    assert read.headers["retry-after"]
    refresh = await dead.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 503
    logout = await dead.client.post("/api/v1/auth/logout", headers=headers)
    assert logout.status_code == 503
    # Sign-up still works: the cache and rate limiter fail open.
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
    """The cache alone failing (revocation fine) serves reads from the database."""
    me, headers = await harness.user_with_token("cacheless@example.com")
    resources = harness.app.state.resources
    resources.redis.breaker.record_failure()
    for _ in range(5):
        resources.redis.breaker.record_failure()
    assert resources.redis.breaker.is_open
    try:
        # With the breaker open the cache is bypassed, but revocation fails closed.
        response = await harness.client.get(f"/api/v1/users/{me['id']}", headers=headers)
        assert response.status_code == 503
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
