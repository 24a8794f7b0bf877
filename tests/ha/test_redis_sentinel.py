"""Redis Sentinel under load: the master is killed, the Sentinels promote its replica, and the
service follows the new master with no restart; sessions and tokens are unaffected."""

from __future__ import annotations

from collections.abc import Callable

from tests.faults.tools import failure_lines, metric
from tests.ha.redis_failover import assert_no_request_lost, run_redis_failover
from tests.ha.redis_sentinel import MASTER_NAME, PASSWORD, SENTINEL_PASSWORD, SentinelSet

RUN = "ha-sentinel"


async def test_sentinel_master_killed_under_load(fault_report: Callable[..., None]) -> None:
    with SentinelSet().running() as sentinels:
        run = await run_redis_failover(
            RUN,
            {
                "REDIS_SENTINELS": sentinels.sentinels_setting,
                "REDIS_SENTINEL_MASTER": MASTER_NAME,
                "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            },
            password=PASSWORD,
            replica_port=sentinels.replica_port,
            cache_keys=f"faults:{RUN}:user:*",
            kill_master=lambda: sentinels.kill(sentinels.master_port),
            replica_promoted=lambda: sentinels.role(sentinels.replica_port) == "master",
        )
    ledger, failover, logs, rows = run.ledger, run.failover, run.logs, run.rows

    assert_no_request_lost(ledger, failover, logs)
    assert metric(failover.samples, "user_service_redis_master_changes_total") >= 1
    assert metric(failover.samples, "user_service_redis_topology", mode="sentinel") == 1
    assert '"level":"error"' not in logs, failure_lines(logs)
    fault_report(
        fault="Redis Sentinel: master killed (SIGKILL), replica promoted by 3 sentinels",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(ledger.failed()),
        failures_expected="none: sessions live in PostgreSQL",
        rows_checked=rows,
        recovery_seconds=failover.served - failover.killed,
        notes=f"sentinels promoted after {failover.promoted - failover.killed:.2f}s "
        f"(down-after 1 s); failover phase: {ledger.summary(ledger.in_phase('failover'))}; "
        "tokens issued before still valid",
    )
