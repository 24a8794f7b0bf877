"""The event-loop lag probe, on a real asyncio loop: a blocked loop shows as lag, an idle one
does not, and a stopped probe observes nothing more."""

from __future__ import annotations

import asyncio
import statistics
import time

from app.observability.loop_lag import LoopLagProbe


async def _observed_while(block_seconds: float, run_seconds: float) -> list[float]:
    seen: list[float] = []
    probe = LoopLagProbe(seen.append, period_seconds=0.05)
    probe.start()
    try:
        await asyncio.sleep(0.01)
        if block_seconds:
            time.sleep(block_seconds)  # noqa: ASYNC251  # the loop blocked on purpose
        await asyncio.sleep(run_seconds)
    finally:
        probe.stop()
    return seen


def test_a_blocked_loop_shows_as_lag() -> None:
    seen = asyncio.run(_observed_while(block_seconds=0.3, run_seconds=0.2))
    # The timer fell due about 0.04 s into the 0.3 s block, so it ran some 0.26 s late.
    assert 0.2 <= max(seen) <= 0.6, seen


def test_an_idle_loop_shows_next_to_no_lag() -> None:
    seen = asyncio.run(_observed_while(block_seconds=0, run_seconds=0.5))
    assert len(seen) >= 5, seen
    assert statistics.median(seen) < 0.02, seen
    assert min(seen) >= 0


def test_a_stopped_probe_observes_nothing_more() -> None:
    async def scenario() -> tuple[int, int]:
        seen: list[float] = []
        probe = LoopLagProbe(seen.append, period_seconds=0.02)
        probe.start()
        await asyncio.sleep(0.15)
        probe.stop()
        stopped_at = len(seen)
        await asyncio.sleep(0.15)
        return stopped_at, len(seen)

    stopped_at, later = asyncio.run(scenario())
    assert stopped_at >= 3
    assert later == stopped_at


def test_starting_twice_keeps_one_timer() -> None:
    async def scenario() -> int:
        seen: list[float] = []
        probe = LoopLagProbe(seen.append, period_seconds=0.05)
        probe.start()
        probe.start()
        await asyncio.sleep(0.27)
        probe.stop()
        return len(seen)

    # One timer ticks about 5 times in 0.27 s; two would tick about 10.
    assert 3 <= asyncio.run(scenario()) <= 6
