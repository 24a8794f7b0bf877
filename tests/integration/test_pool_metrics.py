"""Pool metrics move when the pool is exhausted: wait time, timeouts, and a fast 503; the
pool gauges count every pool of the process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

from app.infra.database import create_engine
from app.settings import Settings
from tests.support.app_harness import AppHarness


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_exhausted_pool_times_out_fast_with_503(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=0.3)
    engine = harness.app.state.resources.engine
    timeouts_before = _value("user_service_db_pool_checkout_timeouts_total")
    waits_before = _value("user_service_db_pool_checkout_wait_seconds_count")
    async with engine.connect() as held:  # the only connection, held by someone else
        await _eventually("user_service_db_pool_checked_out_connections", 1)
        response = await harness.client.post(
            "/api/v1/users", json={"email": "starved@example.com", "password": "password-123"}
        )
        await held.rollback()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    # The app's background work (the session-cache lease keeper, the key ring) checks out
    # connections too and times out as well while the only one is held: at least this one.
    assert _value("user_service_db_pool_checkout_timeouts_total") >= timeouts_before + 1
    assert _value("user_service_db_pool_checkout_wait_seconds_count") > waits_before
    # The slow bucket got the 0.3 s wait: the histogram saw a real wait, not only zeros.
    assert _value("user_service_db_pool_checkout_wait_seconds_sum") >= 0.3
    assert _value("user_service_db_errors_total", kind="timeout") >= 1
    await _eventually("user_service_db_pool_checked_out_connections", 0)
    retry = await harness.client.post(
        "/api/v1/users", json={"email": "starved@example.com", "password": "password-123"}
    )
    assert retry.status_code == 201


async def _eventually(name: str, expected: float) -> None:
    """The gauge reaches `expected` (other apps of this test process, such as the shared
    harness's background work, may hold a connection for a moment)."""
    for _ in range(60):
        if _value(name) == expected:
            return
        await asyncio.sleep(0.05)
    assert _value(name) == expected


async def test_the_pool_gauges_count_every_pool_of_the_process(
    settings_factory: Callable[..., Settings],
) -> None:
    # A worker has one pool; a process with two must not show whichever moved last.
    first = create_engine(settings_factory(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=1))
    second = create_engine(settings_factory(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=1))
    checked_out = "user_service_db_pool_checked_out_connections"
    overflow = "user_service_db_pool_overflow_connections"
    await _eventually(checked_out, 0)
    try:
        async with first.connect():
            await _eventually(checked_out, 1)
            async with second.connect():
                await _eventually(checked_out, 2)
            # The second pool's checkin leaves the first one's connection counted.
            await _eventually(checked_out, 1)
            async with first.connect(), second.connect():
                await _eventually(checked_out, 3)
                await _eventually(overflow, 1)  # the first pool's second connection
        await _eventually(checked_out, 0)
        await _eventually(overflow, 0)
    finally:
        await first.dispose()
        await second.dispose()
