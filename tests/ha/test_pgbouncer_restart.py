"""The service under load behind a stock PgBouncer in transaction mode, and the PgBouncer killed
and restarted: requests fail fast with 503 meanwhile, and the pool recovers by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.faults.conftest import service_env
from tests.faults.tools import (
    Ledger,
    check_rows,
    failure_lines,
    fetch_metrics,
    metric,
    wait_for,
)
from tests.ha.pgbouncer import PgBouncer
from tests.ha.under_load import kill_into_phase, load_and_probe
from tests.support.database import drop_database, fresh_database
from tests.support.service import running_service

DATABASE = "user_service_ha_bouncer_restart"
DOWN_FOR = 2.0


async def test_pgbouncer_killed_and_restarted_under_load(
    fault_report: Callable[..., None],
) -> None:
    await asyncio.to_thread(fresh_database, DATABASE)
    ledger = Ledger("ha-bouncer")
    bouncer = PgBouncer([DATABASE])
    try:
        with bouncer.running():
            env = service_env(bouncer.url(DATABASE), "ha-bouncer", DB_PGBOUNCER="true")
            with running_service(env) as service:
                base = service.base_url
                async with load_and_probe(ledger, base, warm_up=3) as (load, probe):
                    killed = await kill_into_phase(ledger, bouncer.kill, "down")
                    await asyncio.sleep(DOWN_FOR)
                    ready_down = (await probe.get(f"{base}/readyz")).json()
                    ledger.phase = "switching"
                    await asyncio.to_thread(bouncer.start)
                    restarted = time.monotonic()
                    ledger.phase = "restarted"

                    async def writes_again() -> bool:
                        return any(
                            o.ok and o.op in {"signup", "update"}
                            for o in ledger.in_phase("restarted")
                        )

                    await wait_for(writes_again, timeout=20)
                    recovery = time.monotonic() - restarted
                    await asyncio.sleep(1)
                    ledger.phase = "after"
                    await asyncio.sleep(3)
                    await load.stop()
                    samples = await fetch_metrics(probe, service.metrics_url)
                logs = service.logs()
        rows = await check_rows(DATABASE, ledger)
    finally:
        await asyncio.to_thread(drop_database, DATABASE)

    failed = ledger.failed()
    assert {o.status for o in failed} <= {503}, (ledger.summary(failed), failure_lines(logs))
    down = ledger.in_phase("down")
    assert [o for o in down if o.status == 503], ledger.summary(down)
    assert all(o.duration < 3 for o in down), ledger.summary(down)
    for phase in ("warm-up", "after"):
        assert not ledger.failed(ledger.in_phase(phase)), (phase, ledger.summary())
    assert ready_down["checks"]["database"] == "down", ready_down
    assert ready_down["reasons"]["database"], ready_down
    assert metric(samples, "user_service_db_errors_total", kind="unavailable") > 0
    assert '"level":"error"' not in logs, failure_lines(logs)
    fault_report(
        fault=f"PgBouncer (stock, transaction mode) killed, restarted after {DOWN_FOR:.0f} s",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(failed),
        failures_expected="503 while the pooler is down",
        rows_checked=rows,
        recovery_seconds=recovery + (restarted - killed),
        notes=f"first write {recovery:.2f}s after the restart; down phase: "
        f"{ledger.summary(down)}; readiness said: {ready_down['reasons']['database']}",
    )
