"""The Redis master failover under load that the Sentinel and Cluster tests share: warm the
cache, kill the master, wait for the promotion and for the service to write to the new
master, then gather what the tests assert on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from tests.faults.tools import Ledger, fetch_metrics, wait_for
from tests.ha.under_load import kill_into_phase, load_and_probe
from tests.support.service import RunningService


@dataclass
class RedisFailover:
    """When the master died, when its replica was promoted and when the service first wrote
    to it, and the service's state once the load stopped."""

    killed: float
    promoted: float
    served: float
    ready: dict[str, Any]
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    still_valid: list[int]


async def fail_over_redis_under_load(
    ledger: Ledger,
    service: RunningService,
    *,
    replica_port: int,
    password: str,
    cache_keys: str,
    kill_master: Callable[[], None],
    replica_promoted: Callable[[], bool],
) -> RedisFailover:
    """Runs the load through a master failover; `cache_keys` is the pattern of the keys the
    service caches, watched on the replica that takes over."""
    base = service.base_url
    successor = aioredis.Redis(port=replica_port, password=password)
    try:
        async with load_and_probe(ledger, base, warm_up=2) as (load, probe):

            async def cached() -> bool:
                return bool(await successor.keys(cache_keys))

            await wait_for(cached, timeout=15)
            killed = await kill_into_phase(ledger, kill_master, "failover")

            async def promoted() -> bool:
                return replica_promoted()

            await wait_for(promoted, timeout=30, interval=0.05)
            promoted_at = time.monotonic()
            # Whatever the cache held is replicated; a key the service writes from now on can
            # only come from a worker connected to the new master.
            stale = await successor.keys(cache_keys)
            if stale:
                await successor.delete(*stale)
            await wait_for(cached, timeout=30, interval=0.05)
            served = time.monotonic()
            ledger.phase = "settling"
            await asyncio.sleep(1)
            ledger.phase = "after"
            await asyncio.sleep(3)
            await load.stop()
            ready = (await probe.get(f"{base}/readyz")).json()
            samples = await fetch_metrics(probe, service.metrics_url)
            # The tokens every virtual user got before the failover still work.
            still_valid = [
                (
                    await probe.get(
                        f"{base}/api/v1/users/me",
                        headers={"Authorization": f"Bearer {user.token}"},
                    )
                ).status_code
                for user in ledger.users
            ]
    finally:
        await successor.aclose()
    return RedisFailover(killed, promoted_at, served, ready, samples, still_valid)


def assert_no_request_lost(ledger: Ledger, failover: RedisFailover, logs: str) -> None:
    """Sessions and tokens live in PostgreSQL, and the cache and rate limiter fall back while
    Redis has no master: a failover costs no request."""
    failed = ledger.failed()
    assert not failed, (ledger.summary(failed), logs[-3000:])
    assert not [o for o in ledger.outcomes if o.status == 401], ledger.summary()
    for phase in ("warm-up", "after"):
        assert not ledger.failed(ledger.in_phase(phase)), (phase, ledger.summary())
    assert set(failover.still_valid) == {200}, failover.still_valid
    assert failover.ready["checks"]["redis"] == "up", failover.ready
