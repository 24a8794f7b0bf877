"""The Redis master failover under load that the Sentinel and Cluster tests share: a fresh
database and the service on the topology, warm the cache, kill the master, wait for the
promotion and for the service to write to the new master, then gather what the tests assert
on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from tests.faults.conftest import service_env
from tests.faults.tools import Ledger, check_rows, failure_lines, fetch_metrics, wait_for
from tests.ha.under_load import kill_into_phase, load_and_probe
from tests.support.database import drop_database, fresh_database
from tests.support.service import RunningService, running_service


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


@dataclass
class FailoverRun:
    """What a Sentinel or Cluster test asserts on: the client's ledger, the failover, the
    service's log and the rows checked in PostgreSQL."""

    ledger: Ledger
    failover: RedisFailover
    logs: str
    rows: int


async def run_redis_failover(
    run: str,
    redis_env: dict[str, str],
    *,
    password: str,
    replica_port: int,
    cache_keys: str,
    kill_master: Callable[[], None],
    replica_promoted: Callable[[], bool],
) -> FailoverRun:
    """A fresh database and the service on the Redis topology `redis_env` names (its servers
    behind `password`, a breaker quick to open and retry), through the master failover."""
    database = f"user_service_{run.replace('-', '_')}"
    url = await asyncio.to_thread(fresh_database, database)
    ledger = Ledger(run)
    try:
        env = service_env(
            url,
            run,
            REDIS_URL="",
            **redis_env,
            REDIS_PASSWORD=password,
            REDIS_BREAKER_FAILURES="2",
            REDIS_BREAKER_COOLDOWN="0.5",
        )
        with running_service(env) as service:
            failover = await fail_over_redis_under_load(
                ledger,
                service,
                replica_port=replica_port,
                password=password,
                cache_keys=cache_keys,
                kill_master=kill_master,
                replica_promoted=replica_promoted,
            )
            logs = service.logs()
        rows = await check_rows(database, ledger)
    finally:
        await asyncio.to_thread(drop_database, database)
    return FailoverRun(ledger, failover, logs, rows)


def assert_no_request_lost(ledger: Ledger, failover: RedisFailover, logs: str) -> None:
    """Sessions and tokens live in PostgreSQL, and the cache and rate limiter fall back while
    Redis has no master: a failover costs no request."""
    failed = ledger.failed()
    assert not failed, (ledger.summary(failed), failure_lines(logs))
    assert not [o for o in ledger.outcomes if o.status == 401], ledger.summary()
    for phase in ("warm-up", "after"):
        assert not ledger.failed(ledger.in_phase(phase)), (phase, ledger.summary())
    assert set(failover.still_valid) == {200}, failover.still_valid
    assert failover.ready["checks"]["redis"] == "up", failover.ready
