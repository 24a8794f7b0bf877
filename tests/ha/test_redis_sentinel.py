"""Redis Sentinel under load: the master is killed, the Sentinels promote its replica, and the
service follows the new master with no restart; sessions and tokens are unaffected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import redis.asyncio as aioredis

from tests.faults.conftest import service_env
from tests.faults.tools import (
    Ledger,
    LoadClient,
    check_rows,
    fetch_metrics,
    metric,
    wait_for,
)
from tests.ha.redis_sentinel import MASTER_NAME, PASSWORD, SENTINEL_PASSWORD, SentinelSet
from tests.support.database import drop_database, fresh_database
from tests.support.service import running_service

RUN = "ha-sentinel"


async def test_sentinel_master_killed_under_load(fault_report: Callable[..., None]) -> None:
    database = "user_service_ha_sentinel"
    url = await asyncio.to_thread(fresh_database, database)
    ledger = Ledger(RUN)
    try:
        with SentinelSet().running() as sentinels:
            env = service_env(
                url,
                RUN,
                REDIS_URL="",
                REDIS_SENTINELS=sentinels.sentinels_setting,
                REDIS_SENTINEL_MASTER=MASTER_NAME,
                REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
                REDIS_PASSWORD=PASSWORD,
                REDIS_BREAKER_FAILURES="2",
                REDIS_BREAKER_COOLDOWN="0.5",
            )
            with running_service(env) as service:
                base = service.base_url
                load = LoadClient(ledger, lambda: [base], users=4, timeout=15)
                probe = httpx.AsyncClient(timeout=5)
                replica = aioredis.Redis(port=sentinels.replica_port, password=PASSWORD)
                try:
                    await load.prepare()
                    load.start()
                    await asyncio.sleep(2)

                    async def cached() -> bool:
                        return bool(await replica.keys(f"faults:{RUN}:user:*"))

                    await wait_for(cached, timeout=15)

                    ledger.phase = "switching"
                    await asyncio.sleep(0.3)
                    sentinels.kill(sentinels.master_port)
                    killed = time.monotonic()
                    ledger.phase = "failover"

                    async def promoted() -> bool:
                        return sentinels.role(sentinels.replica_port) == "master"

                    await wait_for(promoted, timeout=30, interval=0.05)
                    promoted_at = time.monotonic()
                    # Whatever the cache held is replicated; a key the service writes from
                    # now on can only come from a worker connected to the new master.
                    stale = await replica.keys(f"faults:{RUN}:user:*")
                    if stale:
                        await replica.delete(*stale)

                    async def serving() -> bool:
                        return bool(await replica.keys(f"faults:{RUN}:user:*"))

                    await wait_for(serving, timeout=30, interval=0.05)
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
                    await load.aclose()
                    await probe.aclose()
                    await replica.aclose()
                logs = service.logs()
        rows = await check_rows(database, ledger)
    finally:
        await asyncio.to_thread(drop_database, database)

    failed = ledger.failed()
    # Sessions and tokens live in PostgreSQL, and the cache and rate limiter fall back while
    # Redis has no master: a failover costs no request.
    assert not failed, (ledger.summary(failed), logs[-3000:])
    assert not [o for o in ledger.outcomes if o.status == 401], ledger.summary()
    for phase in ("warm-up", "after"):
        assert not ledger.failed(ledger.in_phase(phase)), (phase, ledger.summary())
    assert set(still_valid) == {200}, still_valid
    assert ready["checks"]["redis"] == "up", ready
    assert metric(samples, "user_service_redis_master_changes_total") >= 1
    assert metric(samples, "user_service_redis_topology", mode="sentinel") == 1
    assert '"level":"error"' not in logs, logs[-3000:]
    fault_report(
        fault="Redis Sentinel: master killed (SIGKILL), replica promoted by 3 sentinels",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(failed),
        failures_expected="none: sessions live in PostgreSQL",
        rows_checked=rows,
        recovery_seconds=served - killed,
        notes=f"sentinels promoted after {promoted_at - killed:.2f}s "
        f"(down-after 1 s); failover phase: {ledger.summary(ledger.in_phase('failover'))}; "
        "tokens issued before still valid",
    )
