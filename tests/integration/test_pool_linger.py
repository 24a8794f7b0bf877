"""An overflow connection outlives its first return for a few seconds: a steady load just
above DB_POOL_SIZE reuses it instead of reconnecting on every burst."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.app_harness import AppHarness


async def _two_at_once(engine: AsyncEngine) -> set[int]:
    """The backend pids of two connections held at the same time (the second one overflow
    with DB_POOL_SIZE=1)."""
    async with engine.connect() as first, engine.connect() as second:
        pids = set()
        for connection in (first, second):
            pids.add((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        return pids


async def _alive(harness: AppHarness, pids: set[int]) -> set[int]:
    async with harness.app.state.resources.probe_engine.connect() as admin:
        rows = await admin.execute(text("SELECT pid FROM pg_stat_activity"))
        return pids & {row.pid for row in rows}


async def test_overflow_connections_linger_then_close(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=1)
    await harness.app.state.resources.session_keeper.stop()  # nothing else uses the pool
    engine = harness.app.state.resources.engine
    pool = engine.sync_engine.pool

    first = await _two_at_once(engine)
    assert len(first) == 2
    assert pool.spare_count() == 1
    # The next burst gets the very same two connections: nothing was closed and reopened.
    assert await _two_at_once(engine) == first

    pool.linger_seconds = 0.2
    await asyncio.sleep(0.4)
    async with engine.connect() as connection:  # any use of the pool closes stale spares
        kept = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert pool.spare_count() == 0
    assert await _alive(harness, first) == {kept}
    # The overflow allowance is whole again: two at once still works.
    assert len(await _two_at_once(engine)) == 2
