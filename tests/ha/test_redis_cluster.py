"""Redis Cluster under load: the master serving the service's hash slot is killed, its replica
takes over, and the service follows the new slot map with no restart."""

from __future__ import annotations

from collections.abc import Callable

from tests.faults.tools import failure_lines, metric
from tests.ha.redis_cluster import PASSWORD, RedisCluster
from tests.ha.redis_failover import assert_no_request_lost, run_redis_failover

RUN = "ha-cluster"
# Every key of the service shares this hash tag: one slot, so one master holds them all.
PREFIX = "{ha-cluster}"


async def test_cluster_master_failed_over_under_load(fault_report: Callable[..., None]) -> None:
    with RedisCluster().running() as cluster:
        master = cluster.master_of(f"{PREFIX}:user:x")
        replica = cluster.replica_of(master)
        run = await run_redis_failover(
            RUN,
            {"REDIS_CLUSTER_NODES": cluster.nodes_setting, "CACHE_KEY_PREFIX": PREFIX},
            password=PASSWORD,
            replica_port=replica,
            cache_keys=f"{PREFIX}:user:*",
            kill_master=lambda: cluster.kill(master),
            replica_promoted=lambda: (
                cluster.role(replica) == "master" and cluster.state_ok(replica)
            ),
        )
    ledger, failover, logs, rows = run.ledger, run.failover, run.logs, run.rows

    assert_no_request_lost(ledger, failover, logs)
    assert metric(failover.samples, "user_service_redis_topology", mode="cluster") == 1
    assert '"level":"error"' not in logs, failure_lines(logs)
    fault_report(
        fault="Redis Cluster (3 masters + 3 replicas): the service's master killed (SIGKILL)",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(ledger.failed()),
        failures_expected="none: sessions live in PostgreSQL",
        rows_checked=rows,
        recovery_seconds=failover.served - failover.killed,
        notes=f"replica promoted after {failover.promoted - failover.killed:.2f}s "
        f"(cluster-node-timeout 1 s); "
        f"failover phase: {ledger.summary(ledger.in_phase('failover'))}; "
        "tokens issued before still valid",
    )
