"""Stopping the worker's background loops (the signing-key reload, the session-cache keeper)."""

from __future__ import annotations

import asyncio
from typing import Any

# How long one cancel is given to end the task before it is sent again.
_RECANCEL_SECONDS = 0.5


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and return once it has ended, whatever it ended with.

    One cancel can be lost: on Python 3.11, asyncio.wait_for drops a cancel that arrives in the
    step its inner await completes, and a database driver may turn one that lands mid-query
    into an error of its own, which a loop that outlives errors carries on from. A single
    cancel-and-await then waits forever (it once held a test run's teardown for an hour), so
    the cancel is sent again until the task has ended. A cancel of the caller itself still
    reaches the caller: asyncio.wait never raises on the task's behalf.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_SECONDS)
    if not task.cancelled():
        task.exception()  # retrieved: a loop's last error needs no "never retrieved" warning
