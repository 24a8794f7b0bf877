"""Redis killed for 10 s and restarted empty, or frozen with SIGSTOP, under steady load:
sessions live in PostgreSQL, so nothing fails, no revoked token gets in, nobody is logged out."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis

from tests.faults.conftest import service_env
from tests.faults.tools import (
    PASSWORD,
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

OUTAGE_SECONDS = 10
FREEZE_SECONDS = 6


@dataclass
class Pair:
    access: str
    refresh: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


@dataclass
class SessionProbe:
    """Logins of the test's own beside the load's: some stay live, some get revoked. Every
    request it makes is counted; a revoked token that gets a 200 is counted apart."""

    client: httpx.AsyncClient
    base: str
    live: list[Pair] = field(default_factory=list)
    revoked: list[Pair] = field(default_factory=list)
    sent: int = 0
    server_errors: list[str] = field(default_factory=list)
    revoked_accepted: int = 0

    async def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        self.sent += 1
        response = await self.client.request(method, self.base + path, **kwargs)  # type: ignore[arg-type]
        if response.status_code >= 500:
            self.server_errors.append(f"{method} {path}: {response.status_code} {response.text}")
        return response

    async def sign_up(self, email: str) -> None:
        response = await self._call(
            "POST", "/api/v1/users", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 201, response.text

    async def login(self, email: str, password: str = PASSWORD) -> Pair:
        response = await self._call(
            "POST", "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return Pair(body["access_token"], body["refresh_token"])

    async def logout(self, pair: Pair) -> float:
        started = time.monotonic()
        response = await self._call("POST", "/api/v1/auth/logout", headers=pair.bearer)
        assert response.status_code == 204, response.text
        self.live.remove(pair)
        self.revoked.append(pair)
        return time.monotonic() - started

    async def change_password(self, user_id: str, pair: Pair, others: list[Pair]) -> None:
        response = await self._call(
            "PATCH",
            f"/api/v1/users/{user_id}",
            json={"password": "a new fault password"},
            headers=pair.bearer,
        )
        assert response.status_code == 200, response.text
        for other in others:
            self.live.remove(other)
            self.revoked.append(other)

    async def _me(self, pair: Pair) -> int:
        return (await self._call("GET", "/api/v1/users/me", headers=pair.bearer)).status_code

    async def check(self) -> tuple[int, int]:
        """(live sessions that work, live sessions) after counting any revoked token that
        got in, access and refresh alike."""
        for pair in self.revoked:
            if await self._me(pair) == 200:
                self.revoked_accepted += 1
            refresh = await self._call(
                "POST", "/api/v1/auth/refresh", json={"refresh_token": pair.refresh}
            )
            if refresh.status_code == 200:
                self.revoked_accepted += 1
        working = 0
        for pair in self.live:
            working += await self._me(pair) == 200
        return working, len(self.live)


async def _prepare(probe: SessionProbe, run: str) -> tuple[str, Pair, list[Pair]]:
    """Two accounts: one with twelve sessions (three to be logged out before the fault,
    three during it, six that stay), one with three whose password changes during the fault."""
    many = f"probe-{run}-many@faults.example.com"
    await probe.sign_up(many)
    probe.live.extend([await probe.login(many) for _ in range(12)])
    changer_email = f"probe-{run}-changer@faults.example.com"
    await probe.sign_up(changer_email)
    changer = [await probe.login(changer_email) for _ in range(3)]
    probe.live.extend(changer)
    me = await probe._call("GET", "/api/v1/users/me", headers=changer[0].bearer)
    return me.json()["id"], changer[0], changer[1:]


async def _sessions_under_load(
    load: LoadClient, probe: SessionProbe, run: str
) -> tuple[str, Pair, list[Pair]]:
    """The load running and the probe's sessions open (see _prepare), every one seen alive
    (and cached so), and the first three logged out, all before the fault."""
    await load.prepare()
    prepared = await _prepare(probe, run)
    load.start()
    await asyncio.sleep(1)
    assert await probe.check() == (15, 15)
    for pair in probe.live[:3]:
        await probe.logout(pair)
    return prepared


def _server_errors(ledger: Ledger) -> list[str]:
    return [
        f"{o.op} {o.phase}: {o.status or o.error} {o.detail}"
        for o in ledger.outcomes
        if o.status is None or o.status >= 500
    ]


async def test_redis_killed_for_10s_and_restarted_empty_under_load(
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
            load = LoadClient(ledger, lambda: [base], users=4)
            client = httpx.AsyncClient(timeout=20)
            probe = SessionProbe(client, base)
            keys = redis.Redis(port=server.port)
            try:
                changer_id, changer, changer_others = await _sessions_under_load(load, probe, run)
                before = await fetch_metrics(client, service.metrics_url)

                ledger.phase = "redis-down"
                server.kill()
                down_at = time.monotonic()
                await asyncio.sleep(1)
                for pair in list(probe.live[:3]):
                    await probe.logout(pair)
                await probe.change_password(changer_id, changer, changer_others)
                while time.monotonic() - down_at < OUTAGE_SECONDS - 1:
                    await probe.check()
                    await asyncio.sleep(0.5)
                ready = await client.get(f"{base}/readyz")
                assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "down"
                during = await fetch_metrics(client, service.metrics_url)
                await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))

                # Back without any data (no persistence, as many managed caches).
                ledger.phase = "redis-back"
                server.start()

                async def cache_filled() -> bool:
                    return bool(keys.keys(f"faults:{run}:sess:*"))

                recovery = await wait_for(cache_filled, timeout=15)

                async def redis_ready() -> bool:
                    response = await client.get(f"{base}/readyz")
                    return bool(response.json()["checks"]["redis"] == "up")

                # Both workers report Redis back: several readiness answers in a row say up.
                for _ in range(6):
                    await wait_for(redis_ready, timeout=15)
                for _ in range(4):
                    await probe.check()
                    await asyncio.sleep(0.5)
                await load.stop()
                working, live = await probe.check()
                vu_working = 0
                for user in ledger.users:
                    response = await client.get(
                        f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {user.token}"}
                    )
                    vu_working += response.status_code == 200
                after = await fetch_metrics(client, service.metrics_url)
            finally:
                await load.aclose()
                await client.aclose()
                keys.close()

    errors = _server_errors(ledger) + probe.server_errors
    sent = len(ledger.outcomes) + probe.sent
    down = ledger.in_phase("redis-down")
    assert down and all(o.duration < 2.0 for o in down if o.op == "read"), "slow reads"
    assert not errors, errors[:10]
    assert probe.revoked_accepted == 0
    assert (working, vu_working) == (live, len(ledger.users)), "a live session was lost"
    assert not [o for o in ledger.outcomes if o.status == 401], ledger.summary()
    assert metric(during, "user_service_session_db_lookups_total", reason="redis_unavailable") > (
        metric(before, "user_service_session_db_lookups_total", reason="redis_unavailable")
    )
    assert metric(after, "user_service_dependency_up", dependency="redis") == 1
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault=f"Redis killed {OUTAGE_SECONDS} s, restarted empty (own redis-server)",
        requests_sent=sent,
        requests_failed=len(errors),
        failures_expected="none",
        rows_checked=rows,
        recovery_seconds=recovery,
        notes=f"5xx: {len(errors)}; revoked tokens accepted: {probe.revoked_accepted} "
        f"({len(probe.revoked)} revoked, 6 during the outage); sessions alive after the "
        f"restart: {working + vu_working}/{live + len(ledger.users)}",
    )


async def test_redis_frozen_with_sigstop_under_load(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    run = "frozen"
    ledger = Ledger(run)
    server = RedisServer()
    socket_timeout = 1.0
    with server.running():
        env = service_env(
            async_url(fault_database),
            run,
            REDIS_URL=server.url,
            REDIS_BREAKER_FAILURES="2",
            REDIS_BREAKER_COOLDOWN="1",
            REDIS_SOCKET_TIMEOUT=str(socket_timeout),
        )
        with running_service(env) as service:
            base = service.base_url
            load = LoadClient(ledger, lambda: [base], users=4)
            client = httpx.AsyncClient(timeout=20)
            probe = SessionProbe(client, base)
            assert server.process is not None
            try:
                changer_id, changer, changer_others = await _sessions_under_load(load, probe, run)

                # Frozen: connections stay open, nothing answers, the cached "active"
                # entries of the sessions revoked below stay in its memory.
                ledger.phase = "redis-frozen"
                server.process.send_signal(signal.SIGSTOP)
                frozen_at = time.monotonic()
                logouts = [await probe.logout(pair) for pair in list(probe.live[:3])]
                await probe.change_password(changer_id, changer, changer_others)
                while time.monotonic() - frozen_at < FREEZE_SECONDS:
                    await probe.check()
                    await asyncio.sleep(0.3)
                ledger.phase = "redis-thawed"
                server.process.send_signal(signal.SIGCONT)
                # Straight after the thaw, stale entries must not let anything in.
                for _ in range(6):
                    await probe.check()
                    await asyncio.sleep(0.25)
                await load.stop()
                working, live = await probe.check()
            finally:
                server.process.send_signal(signal.SIGCONT)
                await load.aclose()
                await client.aclose()

    errors = _server_errors(ledger) + probe.server_errors
    # Once both workers' breakers are open, a request waits at most one Redis timeout
    # (the breaker's trial call after each cool-down).
    settled = [
        o
        for o in ledger.in_phase("redis-frozen", "read")
        if o.started - frozen_at > 2 * socket_timeout + 0.5
    ]
    slowest = max((o.duration for o in settled), default=0.0)
    assert settled and slowest <= socket_timeout + 0.75, slowest
    assert not errors, errors[:10]
    assert probe.revoked_accepted == 0
    assert working == live
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault=f"Redis frozen (SIGSTOP) {FREEZE_SECONDS} s under load",
        requests_sent=len(ledger.outcomes) + probe.sent,
        requests_failed=len(errors),
        failures_expected="none",
        rows_checked=rows,
        recovery_seconds=None,
        notes=f"5xx: {len(errors)}; revoked tokens accepted: {probe.revoked_accepted}; "
        f"slowest read once the breakers opened {slowest:.2f}s; logouts during the freeze "
        f"took {max(logouts):.2f}s (they wait out the cache lease); live sessions "
        f"working after: {working}/{live}",
    )
