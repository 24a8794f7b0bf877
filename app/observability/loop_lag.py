"""How late a worker's event loop runs work that is already due: its event-loop lag.

A timer is due every `period` seconds and records how much later than due it ran. Any
request that becomes ready at that moment waits as long before its code runs, so the lag is
time every request of the worker spends queued inside the process. It rises when the worker
gets too little CPU (throttled at its limit, a busy node) or when code blocks the loop, and
stays flat when only a dependency is slow, which is how it tells the two apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

# Ten checks a second: over a 5-minute window a worker's p99 rests on some 3000 of them. A
# check's own work is about 6 us; a worker with nothing else to do also wakes its loop for
# each, some 2 ms of CPU a second in all, which a busy worker does not pay.
PERIOD_SECONDS: Final = 0.1


class LoopLagProbe:
    """Observes the event loop's lag through `observe` until stopped; start it from the loop."""

    def __init__(
        self, observe: Callable[[float], None], period_seconds: float = PERIOD_SECONDS
    ) -> None:
        self._observe = observe
        self._period = period_seconds
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._timer is None:
            self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # Measured on the monotonic clock, not the loop's own: a loop implementation that
        # rounds its timers must not hide (or invent) lag.
        self._due = time.monotonic() + self._period
        self._timer = loop.call_later(self._period, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._observe(max(0.0, time.monotonic() - self._due))
        self._schedule(loop)
