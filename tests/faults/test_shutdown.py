"""SIGTERM under load, a rolling restart, and a worker killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import httpx

from app.observability.metric_values import FLUSH_INTERVAL_SECONDS
from tests.faults.conftest import service_env
from tests.faults.tools import (
    Ledger,
    LoadClient,
    ReadinessRouter,
    check_rows,
    fetch_metrics,
    metric,
    wait_for,
    worker_pids,
)
from tests.support.database import async_url
from tests.support.service import RunningService, running_service

DRAIN = 3.0
GRACE = 10.0
# Sign-ups hash with real Argon2 costs, so requests are in flight when the signal lands.
SLOW_HASHING = {"ARGON2_MEMORY_KIB": "65536", "ARGON2_TIME_COST": "2"}


def _env(database: str, run: str) -> dict[str, str]:
    return service_env(
        async_url(database),
        run,
        SHUTDOWN_DRAIN_SECONDS=str(DRAIN),
        GUNICORN_GRACEFUL_TIMEOUT=str(int(GRACE)),
        **SLOW_HASHING,
    )


async def _terminate(service: RunningService) -> tuple[float, float, int]:
    """SIGTERM the master; returns (signal time, seconds until the process exited, the status
    of a request sent on a new connection in the middle of the drain)."""
    sent = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    # Whatever the load client's timing, prove the drain still serves new connections.
    await asyncio.sleep(DRAIN / 2)
    async with httpx.AsyncClient(timeout=5) as client:
        during_drain = (await client.get(f"{service.base_url}/livez")).status_code
    await asyncio.to_thread(service.process.wait, DRAIN + GRACE + 10)
    return sent, time.monotonic() - sent, during_drain


async def test_sigterm_drains_then_exits_without_failing_accepted_requests(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    ledger = Ledger("sigterm")
    with running_service(_env(fault_database, "sigterm")) as service:
        async with ReadinessRouter() as router:
            router.add(service.base_url)
            await wait_for(lambda: _true(bool(router.targets())), timeout=5)
            load = LoadClient(ledger, router.targets, users=6, timeout=30)
            try:
                await load.prepare()
                load.start()
                await asyncio.sleep(3)
                ledger.phase = "terminating"
                signalled, exit_after, during_drain = await _terminate(service)
                # A readiness blip under load before the signal is not the drain's doing.
                unready_at = router.first_unready_after(service.base_url, signalled)
                await load.stop()
            finally:
                await load.aclose()
        logs = service.logs()

    unready_after = (unready_at - signalled) if unready_at is not None else float("inf")
    in_flight = [o for o in ledger.outcomes if o.started < signalled < o.ended]
    after_signal = [o for o in ledger.outcomes if o.started >= signalled]
    failed = ledger.failed()
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault=f"SIGTERM under load (drain {DRAIN:.0f} s, grace {GRACE:.0f} s)",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(failed),
        failures_expected="none",
        rows_checked=rows,
        recovery_seconds=None,
        notes=f"readiness 503 after {unready_after:.2f}s, exit after {exit_after:.2f}s; "
        f"{len(in_flight)} in flight at SIGTERM, {len(after_signal)} sent after it",
    )
    assert not failed, (ledger.summary(failed), [(o.op, o.error, o.detail) for o in failed][:5])
    assert unready_at is not None, "readiness never failed after SIGTERM"
    assert unready_after < 1.0, unready_after
    assert in_flight, "no request was in flight when the signal landed"
    assert during_drain == 200, f"a new connection during the drain got {during_drain}"
    # Drained for DRAIN seconds, then stopped well inside the grace period.
    assert DRAIN - 0.5 <= exit_after <= DRAIN + GRACE, exit_after
    assert "Traceback" not in logs, logs[-3000:]


async def test_rolling_restart_loses_no_request(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    """Start a second instance, SIGTERM the first: the client retries only connections
    that were refused (nothing sent), and no request fails or is lost."""
    ledger = Ledger("rolling")
    env = _env(fault_database, "rolling")
    with running_service(env) as first:
        async with ReadinessRouter() as router:
            router.add(first.base_url)
            await wait_for(lambda: _true(bool(router.targets())), timeout=5)
            load = LoadClient(ledger, router.targets, users=6, timeout=30)
            second_cm = running_service(env)
            second: RunningService | None = None
            try:
                await load.prepare()
                load.start()
                await asyncio.sleep(2)
                ledger.phase = "second-starting"
                second = await asyncio.to_thread(second_cm.__enter__)
                router.add(second.base_url)
                await wait_for(lambda: _true(len(router.targets()) == 2), timeout=10)
                await asyncio.sleep(1.5)
                ledger.phase = "first-stopping"
                _, exit_after, _ = await _terminate(first)
                ledger.phase = "second-only"
                await asyncio.sleep(2)
                await load.stop()
            finally:
                await load.aclose()
                if second is not None:
                    await asyncio.to_thread(second_cm.__exit__, None, None, None)

    failed = ledger.failed()
    served_by = {
        base: sum(1 for o in ledger.outcomes if o.target == base and o.ok)
        for base in (first.base_url, second.base_url if second else "")
    }
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault="Rolling restart: second instance up, first SIGTERMed",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(failed),
        failures_expected="none",
        rows_checked=rows,
        recovery_seconds=None,
        notes=f"first exited {exit_after:.2f}s after SIGTERM; served: "
        f"{list(served_by.values())} (first, second)",
    )
    assert not failed, (ledger.summary(failed), [(o.op, o.error, o.detail) for o in failed][:5])
    assert all(served_by.values()), served_by


async def test_worker_killed_is_replaced_and_metrics_stay_right(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    ledger = Ledger("crash")
    with running_service(service_env(async_url(fault_database), "crash")) as service:
        base = service.base_url
        load = LoadClient(ledger, lambda: [base], users=4)
        probe = httpx.AsyncClient()
        try:
            await load.prepare()
            load.start()
            await asyncio.sleep(2)
            workers = worker_pids(service.process.pid)
            assert len(workers) == 2, workers
            victim = min(workers)
            # Both apps have started (readiness needed only one), so the next start-up
            # logged can only be the replacement's.
            await wait_for(lambda: _true(_startups(service) == len(workers)), timeout=30)
            started_before = _startups(service)
            ledger.phase = "crash"
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)

            async def replaced() -> bool:
                # A new worker process exists and its app finished starting (uvicorn logs
                # that after the lifespan set the worker's gauges). A metrics file of the
                # new pid is no such sign: the first metric it creates writes the file, with
                # every gauge still at 0, before the lifespan has begun.
                now = worker_pids(service.process.pid)
                return len(now) == 2 and victim not in now and _startups(service) > started_before

            recovery = await wait_for(replaced, timeout=30, interval=0.05)
            # Give the new worker a moment under load.
            await asyncio.sleep(1)
            ledger.phase = "steady"
            await asyncio.sleep(2.5)
            await load.stop()
            samples = await _settled_metrics(probe, service.metrics_url)
            ready = await probe.get(f"{base}/readyz")
            files = sorted(os.listdir(service.metrics_dir))
            pids_now = worker_pids(service.process.pid)
        finally:
            await load.aclose()
            await probe.aclose()

    crash = ledger.in_phase("crash")
    failed = ledger.failed()
    # Only requests that were on the killed worker when it died may fail: at most one per
    # virtual user, all of them in flight at the kill.
    assert len(failed) <= load.users, ledger.summary(failed)
    for outcome in failed:
        assert outcome.started <= killed <= outcome.ended + 0.05, outcome
        assert outcome.status is None, outcome
    assert not ledger.failed(ledger.in_phase("steady")), ledger.summary(ledger.in_phase("steady"))
    assert ready.status_code == 200
    # Live gauges count the two live workers only; counters keep the dead worker's counts
    # but never count a request twice.
    assert metric(samples, "user_service_worker_processes") == 2, (files, pids_now, victim)
    assert metric(samples, "user_service_db_pool_size_connections") == 2 * 2
    served = sum(1 for o in ledger.outcomes if o.status is not None)
    counted = metric(samples, "http_requests_total")
    # A SIGKILL leaves the worker no moment to write what it counted since its last flush:
    # at most the requests answered within two flush intervals before the kill are lost.
    unflushed = sum(
        1
        for o in ledger.outcomes
        if o.status is not None and killed - 2 * FLUSH_INTERVAL_SECONDS <= o.ended <= killed
    )
    assert served - load.users - unflushed <= counted <= served, (counted, served, unflushed)
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault="Worker SIGKILLed under load",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(failed),
        failures_expected="only requests in flight on the killed worker",
        rows_checked=rows,
        recovery_seconds=recovery,
        notes=f"crash phase {ledger.summary(crash)}; http_requests_total {counted:.0f} "
        f"vs {served} responses seen; worker_processes 2",
    )


async def _true(value: bool) -> bool:
    return value


def _startups(service: RunningService) -> int:
    """Worker apps that finished their lifespan start-up so far (one log line each)."""
    return service.logs().count('"event":"Application startup complete."')


async def _settled_metrics(
    probe: httpx.AsyncClient, metrics_url: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape taken once the workers have recorded every request they answered.

    A worker counts a request after its last byte is sent, so the client can have the
    response before the counter moves, and another worker's counts reach a scrape up to a
    flush interval later. Requests in progress (a live-worker gauge) reach 0 in the same
    step that counts them: nothing in progress and the same total over scrapes spanning
    two flush intervals is the end state."""
    previous = None
    since = time.monotonic()
    for _ in range(150):
        samples = await fetch_metrics(probe, metrics_url)
        state = (
            metric(samples, "http_requests_inprogress"),
            metric(samples, "http_requests_total"),
        )
        if state != previous:
            previous, since = state, time.monotonic()
        elif state[0] == 0 and time.monotonic() - since >= 2 * FLUSH_INTERVAL_SECONDS:
            return samples
        await asyncio.sleep(0.1)
    raise AssertionError(f"requests still in progress after the load stopped: {previous}")
