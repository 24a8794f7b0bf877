"""The load the failover tests run through their fault: virtual users warmed up before it, a
probe client beside them, and the kill fenced off by a "switching" phase."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import httpx

from tests.faults.tools import Ledger, LoadClient


@contextlib.asynccontextmanager
async def load_and_probe(
    ledger: Ledger, base_url: str, warm_up: float
) -> AsyncIterator[tuple[LoadClient, httpx.AsyncClient]]:
    """Four virtual users on `base_url`, running for `warm_up` seconds before the body."""
    load = LoadClient(ledger, lambda: [base_url], users=4, timeout=15)
    probe = httpx.AsyncClient(timeout=5)
    try:
        await load.prepare()
        load.start()
        await asyncio.sleep(warm_up)
        yield load, probe
    finally:
        await load.aclose()
        await probe.aclose()


async def kill_into_phase(ledger: Ledger, kill: Callable[[], None], phase: str) -> float:
    """Runs `kill` and moves the ledger on to `phase`; returns when the kill was done."""
    # Requests in flight across the kill belong to neither phase's assertions.
    ledger.phase = "switching"
    await asyncio.sleep(0.3)
    await asyncio.to_thread(kill)
    killed = time.monotonic()
    ledger.phase = phase
    return killed
