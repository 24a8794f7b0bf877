"""PostgreSQL failover under load: the primary dies, the standby is promoted, and the service
follows by itself through its multi-host DATABASE_URL (target_session_attrs=read-write)."""

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
from tests.ha.postgres_pair import PostgresPair
from tests.ha.under_load import kill_into_phase, load_and_probe
from tests.support.database import migrate
from tests.support.service import running_service

DATABASE = "user_service_ha_failover"
# An operator (or Patroni, or the operator of a managed database) takes a moment to decide.
PROMOTE_AFTER = 1.0


async def test_primary_killed_standby_promoted_under_load(
    fault_report: Callable[..., None],
) -> None:
    ledger = Ledger("ha-pg")
    with PostgresPair().running() as pair:
        pair.sql(pair.primary_port, f'CREATE DATABASE "{DATABASE}"')
        migrate(f"postgresql+asyncpg://postgres@127.0.0.1:{pair.primary_port}/{DATABASE}")
        env = service_env(pair.failover_url(DATABASE), "ha-pg", DB_CONNECT_TIMEOUT="2")
        with running_service(env) as service:
            base = service.base_url
            async with load_and_probe(ledger, base, warm_up=2) as (load, probe):
                killed = await kill_into_phase(ledger, pair.kill_primary, "failover")
                await asyncio.sleep(PROMOTE_AFTER)
                await asyncio.to_thread(pair.promote_standby)
                promoted = time.monotonic()

                def first_write() -> float | None:
                    done = [
                        o.ended
                        for o in ledger.in_phase("failover")
                        if o.ok and o.op in {"signup", "update"} and o.started > killed
                    ]
                    return min(done) if done else None

                async def writes_again() -> bool:
                    return first_write() is not None

                try:
                    await wait_for(writes_again, timeout=30)
                except TimeoutError as error:
                    summary = ledger.summary(ledger.in_phase("failover"))
                    raise AssertionError(
                        f"no write after the failover: {summary}\n{service.logs()[-4000:]}"
                    ) from error
                recovered = first_write()
                assert recovered is not None
                ledger.phase = "settling"
                await asyncio.sleep(1)
                ledger.phase = "after"
                await asyncio.sleep(3)
                await load.stop()
                ready = await probe.get(f"{base}/readyz")
                samples = await fetch_metrics(probe, service.metrics_url)
            logs = service.logs()
        rows = await check_rows(DATABASE, ledger, dsn=pair.dsn(pair.standby_port, f"{DATABASE}"))

    failover = ledger.in_phase("failover")
    failed = ledger.failed()
    # While no writable host exists every database request is a 503 (or a 504 when it was
    # cut mid-statement), never an unhandled 500 or a hang.
    assert {o.status for o in failed} <= {503, 504}, (ledger.summary(failed), failure_lines(logs))
    assert '"level":"error"' not in logs, failure_lines(logs)
    for phase in ("warm-up", "after"):
        failures = ledger.failed(ledger.in_phase(phase))
        causes = [line for line in logs.splitlines() if "database_error" in line][:5]
        assert not failures, (phase, ledger.summary(failures), causes)
    assert ready.status_code == 200, ready.text
    assert metric(samples, "user_service_db_errors_total", kind="unavailable") > 0
    fault_report(
        fault=f"PostgreSQL primary killed, standby promoted after {PROMOTE_AFTER:.0f} s "
        "(multi-host URL, target_session_attrs=read-write)",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(ledger.failed()),
        failures_expected="503 while no writable host",
        rows_checked=rows,
        recovery_seconds=recovered - killed,
        notes=f"promotion to first write {max(0.0, recovered - promoted):.2f}s; "
        f"failover phase: {ledger.summary(failover)}; no acknowledged write lost",
    )
