"""Redis Cluster under load: the master serving the service's hash slot is killed, its replica
takes over, and the service follows the new slot map with no restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import redis.asyncio as aioredis

from tests.faults.conftest import service_env
from tests.faults.tools import Ledger, LoadClient, check_rows, fetch_metrics, metric, wait_for
from tests.ha.redis_cluster import PASSWORD, RedisCluster
from tests.support.database import drop_database, fresh_database
from tests.support.service import running_service

RUN = "ha-cluster"
# Every key of the service shares this hash tag: one slot, so one master holds them all.
PREFIX = "{ha-cluster}"


async def test_cluster_master_failed_over_under_load(fault_report: Callable[..., None]) -> None:
    database = "user_service_ha_cluster"
    url = await asyncio.to_thread(fresh_database, database)
    ledger = Ledger(RUN)
    try:
        with RedisCluster().running() as cluster:
            env = service_env(
                url,
                RUN,
                REDIS_URL="",
                REDIS_CLUSTER_NODES=cluster.nodes_setting,
                REDIS_PASSWORD=PASSWORD,
                CACHE_KEY_PREFIX=PREFIX,
                REDIS_BREAKER_FAILURES="2",
                REDIS_BREAKER_COOLDOWN="0.5",
            )
            master = cluster.master_of(f"{PREFIX}:user:x")
            replica = cluster.replica_of(master)
            with running_service(env) as service:
                base = service.base_url
                load = LoadClient(ledger, lambda: [base], users=4, timeout=15)
                probe = httpx.AsyncClient(timeout=5)
                successor = aioredis.Redis(port=replica, password=PASSWORD)
                try:
                    await load.prepare()
                    load.start()
                    await asyncio.sleep(2)

                    async def cached() -> bool:
                        return bool(await successor.keys(f"{PREFIX}:user:*"))

                    await wait_for(cached, timeout=15)

                    ledger.phase = "switching"
                    await asyncio.sleep(0.3)
                    cluster.kill(master)
                    killed = time.monotonic()
                    ledger.phase = "failover"

                    async def promoted() -> bool:
                        return cluster.role(replica) == "master" and cluster.state_ok(replica)

                    await wait_for(promoted, timeout=30, interval=0.05)
                    promoted_at = time.monotonic()
                    stale = await successor.keys(f"{PREFIX}:user:*")
                    if stale:
                        await successor.delete(*stale)

                    async def serving() -> bool:
                        return bool(await successor.keys(f"{PREFIX}:user:*"))

                    await wait_for(serving, timeout=30, interval=0.05)
                    served = time.monotonic()
                    ledger.phase = "settling"
                    await asyncio.sleep(1)
                    ledger.phase = "after"
                    await asyncio.sleep(3)
                    await load.stop()
                    ready = (await probe.get(f"{base}/readyz")).json()
                    samples = await fetch_metrics(probe, service.metrics_url)
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
                    await successor.aclose()
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
    assert metric(samples, "user_service_redis_topology", mode="cluster") == 1
    assert '"level":"error"' not in logs, logs[-3000:]
    fault_report(
        fault="Redis Cluster (3 masters + 3 replicas): the service's master killed (SIGKILL)",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(failed),
        failures_expected="none: sessions live in PostgreSQL",
        rows_checked=rows,
        recovery_seconds=served - killed,
        notes=f"replica promoted after {promoted_at - killed:.2f}s (cluster-node-timeout 1 s); "
        f"failover phase: {ledger.summary(ledger.in_phase('failover'))}; "
        "tokens issued before still valid",
    )
