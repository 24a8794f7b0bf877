"""Redis killed under load, then restarted: reads fail closed, sign-ups go on, the cache refills."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis

from tests.faults.conftest import service_env
from tests.faults.tools import (
    Ledger,
    LoadClient,
    RedisServer,
    check_rows,
    fetch_metrics,
    metric,
    wait_for,
)
from tests.support.database import async_url
from tests.support.service import running_service


async def test_redis_killed_and_restarted_under_load(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    run = "redis"
    ledger = Ledger(run)
    server = RedisServer()
    with server.running():
        env = service_env(
            async_url(fault_database),
            run,
            REDIS_URL=server.url,
            REDIS_BREAKER_FAILURES="2",
            REDIS_BREAKER_COOLDOWN="1",
        )
        with running_service(env) as service:
            base = service.base_url
            load = LoadClient(ledger, lambda: [base], users=4, relogin_on_401=True)
            probe = httpx.AsyncClient(timeout=5)
            keys = redis.Redis(port=server.port)
            try:
                await load.prepare()
                load.start()
                await asyncio.sleep(2)

                async def cache_filled() -> bool:
                    return bool(keys.keys(f"faults:{run}:user:*"))

                await wait_for(cache_filled, timeout=5)

                # A burst wider than the steady load fills each worker's Redis pool with
                # more connections than the load alone would open.
                await _burst(load, ledger)
                before = await fetch_metrics(probe, service.metrics_url)

                # Fault: Redis is gone. Requests in flight across a switch belong to no
                # phase's assertions.
                ledger.phase = "switching"
                await asyncio.sleep(0.5)
                server.kill()
                await asyncio.sleep(0.5)
                ledger.phase = "redis-down"
                await asyncio.sleep(3)
                ready = await probe.get(f"{base}/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["redis"] == "down"
                during = await fetch_metrics(probe, service.metrics_url)

                # Redis returns (empty: no persistence, as in the dev manifests).
                ledger.phase = "switching"
                await asyncio.sleep(0.5)
                ledger.phase = "redis-back"
                server.start()
                restarted = time.monotonic()
                recovery = await wait_for(
                    lambda: _read_succeeds(ledger, load), timeout=15, interval=0.1
                )

                await wait_for(cache_filled, timeout=10)

                async def redis_ready() -> bool:
                    response = await probe.get(f"{base}/readyz")
                    return bool(response.json()["checks"]["redis"] == "up")

                # Both workers' breakers closed: several readiness answers in a row say up.
                for _ in range(6):
                    await wait_for(redis_ready, timeout=15)
                recovery = max(recovery, time.monotonic() - restarted)
                await asyncio.sleep(1.5)
                ledger.phase = "steady"
                await asyncio.sleep(1.5)
                await load.stop()
                # The same burst again: every pooled Redis connection of both workers is
                # used, including any left over from before the restart.
                ledger.phase = "burst"
                for user in ledger.users:
                    await load.login(user)
                await _burst(load, ledger)
                after = await fetch_metrics(probe, service.metrics_url)
                service_log = service.logs()
            finally:
                await load.aclose()
                await probe.aclose()
                keys.close()

    # While Redis was down: authenticated requests failed closed with a problem detail,
    # sign-ups kept working, nothing hung.
    down = ledger.in_phase("redis-down")
    assert down, "no load during the fault"
    for outcome in down:
        assert outcome.status is not None, (outcome.op, outcome.error)
        assert outcome.duration < 2.0, (outcome.op, outcome.duration)
    for outcome in ledger.in_phase("redis-down", "read") + ledger.in_phase("redis-down", "update"):
        assert outcome.status == 503, (outcome.op, outcome.status, outcome.detail)
        assert "revocation" in outcome.detail and outcome.retry_after
    signups = ledger.in_phase("redis-down", "signup")
    assert signups and all(o.status == 201 for o in signups), ledger.summary(signups)
    # The fault is visible in the metrics.
    assert metric(during, "user_service_redis_errors_total", component="revocation") > metric(
        before, "user_service_redis_errors_total", component="revocation"
    )
    assert metric(during, "user_service_dependency_up", dependency="redis") == 0
    # Before and after the fault, nothing failed (tokens issued before the restart are
    # gone with Redis's memory: a 401 there is followed by a fresh login).
    for phase in ("warm-up", "steady", "burst"):
        failed = ledger.failed(ledger.in_phase(phase))
        errors = [line[:300] for line in service_log.splitlines() if "error" in line][:5]
        assert not failed, (phase, ledger.summary(failed), [o.detail for o in failed], errors)
    assert metric(after, "user_service_cache_requests_total", result="hit") > metric(
        during, "user_service_cache_requests_total", result="hit"
    )
    assert metric(after, "user_service_dependency_up", dependency="redis") == 1
    back = [o for o in ledger.in_phase("redis-back") if o.status == 503]
    last_503 = max((o.started - restarted for o in back), default=0.0)
    rows = await check_rows(fault_database, ledger)
    failed = ledger.failed()
    fault_report(
        fault="Redis killed, restarted (own redis-server)",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(failed),
        failures_expected="503 on authenticated reads/updates while down; "
        "401 on pre-restart tokens",
        rows_checked=rows,
        recovery_seconds=recovery,
        notes=f"failures by status: {ledger.summary(failed)}; after the restart "
        f"{len(back)} x 503, the last {last_503:.2f}s after it",
    )


async def _burst(load: LoadClient, ledger: Ledger) -> None:
    await asyncio.gather(
        *(
            load.request(
                "read",
                "GET",
                f"/api/v1/users/{user.id}",
                headers={"Authorization": f"Bearer {user.token}"},
            )
            for _ in range(8)
            for user in ledger.users
        )
    )


async def _read_succeeds(ledger: Ledger, load: LoadClient) -> bool:
    recent = [o for o in ledger.in_phase("redis-back", "read") if o.ok]
    return bool(recent)


async def _readyz(client: httpx.AsyncClient, base: str) -> Any:
    response = await client.get(f"{base}/readyz")
    assert response.status_code == 200, response.text
    return response.json()
