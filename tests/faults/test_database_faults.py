"""The database slow, cut or partitioned behind a TCP proxy, and the pool exhausted, under load."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from tests.faults.conftest import service_env
from tests.faults.tools import (
    SHARED_REDIS,
    Ledger,
    LoadClient,
    Outcome,
    TcpProxy,
    check_rows,
    database_dsn,
    fetch_metrics,
    metric,
    metrics_when,
    wait_for,
)
from tests.support.service import RunningService, running_service

STATEMENT_TIMEOUT = 1.0  # DB_STATEMENT_TIMEOUT_MS / 1000 in service_env
POOL_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0
# The client's own deadline on every statement, the pool's pre-ping included.
COMMAND_TIMEOUT = STATEMENT_TIMEOUT + 1.0
# Longest any request may take while the database misbehaves: one pool wait, a pre-ping that
# runs into the client's deadline and the one fresh connection the pool then tries (or a
# statement up to that deadline), plus scheduling slack on a busy 2-core machine.
DEADLINE = POOL_TIMEOUT + COMMAND_TIMEOUT + max(CONNECT_TIMEOUT, COMMAND_TIMEOUT) + 1.5
# A write under a table lock may first wait for a pooled connection (at most the pool
# timeout, or it would be a 503), then its statement runs into the statement timeout.
WRITE_DEADLINE = STATEMENT_TIMEOUT + POOL_TIMEOUT + 0.5
_LOGS: dict[str, str] = {}


def _errors(run: str) -> list[str]:
    return [line[:400] for line in _LOGS.get(run, "").splitlines() if "error" in line.lower()][:8]


@contextlib.contextmanager
def _proxied_service(
    database: str, run: str, **env: str
) -> Iterator[tuple[TcpProxy, RunningService]]:
    proxy = TcpProxy().start()
    try:
        with running_service(service_env(proxy.database_url(database), run, **env)) as service:
            yield proxy, service
            _LOGS[run] = service.logs()
    finally:
        proxy.stop()


@contextlib.asynccontextmanager
async def _load(ledger: Ledger, base: str, **kwargs: Any) -> AsyncIterator[LoadClient]:
    load = LoadClient(ledger, lambda: [base], **kwargs)
    try:
        await load.prepare()
        load.start()
        yield load
    finally:
        await load.aclose()


async def _switch(ledger: Ledger, phase: str, action: Callable[[], Any]) -> float:
    """Apply a fault change with a settling gap, so that requests straddling the change
    are judged by neither phase."""
    ledger.phase = "switching"
    await asyncio.sleep(0.3)
    result = action()
    if asyncio.iscoroutine(result):
        await result
    changed = time.monotonic()
    await asyncio.sleep(0.2)
    ledger.phase = phase
    return changed


def _writes(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.op in {"signup", "update"}]


def _before(ledger: Ledger, phase: str, fault_at: float) -> list[Outcome]:
    """The outcomes of `phase` that ended before the fault began. One that started in it
    and was still running when the fault began (on a busy machine a request can outlast
    _switch's settling gap) met the fault, and is the fault's to judge."""
    return [o for o in ledger.in_phase(phase) if o.ended < fault_at]


async def _cached_user(
    client: httpx.AsyncClient, base: str, run: str
) -> tuple[str, dict[str, str]]:
    """Sign up and log in a user and read it until its entry is in Redis (a read answered
    while the breaker was open, or whose store timed out, leaves none); return its URL and
    auth."""
    email = f"cached-{uuid.uuid4().hex[:8]}@faults.example.com"
    password = "cached-user-password"
    created = await client.post(f"{base}/api/v1/users", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    login = await client.post(
        f"{base}/api/v1/auth/token", data={"username": email, "password": password}
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    url = f"{base}/api/v1/users/{created.json()['id']}"
    key = f"faults:{run}:user:{created.json()['id']}"  # CACHE_KEY_PREFIX of service_env
    store = aioredis.Redis.from_url(SHARED_REDIS)
    try:

        async def cached() -> bool:
            assert (await client.get(url, headers=headers)).status_code == 200
            return bool(await store.exists(key))

        await wait_for(cached, timeout=10, interval=0.2)
    finally:
        await store.aclose()
    return url, headers


async def _ready(client: httpx.AsyncClient, base: str) -> tuple[int, Any]:
    response = await client.get(f"{base}/readyz", timeout=5)
    return response.status_code, response.json()


def _slow(outcomes: list[Outcome], limit: float) -> list[tuple[str, Any, float]]:
    return [
        (o.op, o.status or o.error, round(o.duration, 2)) for o in outcomes if o.duration > limit
    ]


async def test_database_slow_statements_time_out_with_504(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    """A lock held on the users table makes writes wait in PostgreSQL: they end with 504 at
    the statement timeout, reads served from the cache go on, readiness stays up (the
    database answers), and once the lock goes everything succeeds again."""
    ledger = Ledger("slow")
    # Each of the load's 4 users may hold a connection for a whole statement timeout, all on
    # one worker: a pool of 4 (2 + overflow 2) lets each request reach its statement, so the
    # test sees the statement timeout, never a pool wait's 503 (the pool test covers that).
    with _proxied_service(fault_database, "slow", DB_MAX_OVERFLOW="2") as (_proxy, service):
        probe = httpx.AsyncClient()
        locker = await asyncpg.connect(database_dsn(fault_database))
        try:
            async with _load(ledger, service.base_url) as load:
                # A user nobody writes to, read once so that it is cached: the load's own
                # users are updated (invalidated) all the time, so whether one of their
                # reads lands on a warm entry during the lock is down to timing.
                cached_url, cached_headers = await _cached_user(probe, service.base_url, "slow")
                await asyncio.sleep(2)
                transaction = locker.transaction()

                async def lock() -> None:
                    await transaction.start()
                    await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")

                locked_at = await _switch(ledger, "locked", lock)
                await asyncio.sleep(2.5)
                cached_read = await probe.get(cached_url, headers=cached_headers, timeout=5)
                await asyncio.sleep(1.5)

                async def a_write_waited_out_the_lock() -> bool:
                    # On a busy machine the load may not have begun a write early enough in
                    # the fixed span: the lock holds until one has (see `cancelled` below).
                    began_by = time.monotonic() - WRITE_DEADLINE
                    return any(o.started < began_by for o in _writes(ledger.in_phase("locked")))

                await wait_for(a_write_waited_out_the_lock, timeout=20)
                status, body = await _ready(probe, service.base_url)
                released = await _switch(ledger, "released", transaction.rollback)

                async def write_succeeds() -> bool:
                    return any(o.ok for o in ledger.in_phase("released", "signup"))

                await wait_for(write_succeeds, timeout=10)
                recovery = time.monotonic() - released
                await asyncio.sleep(1.5)
                await load.stop()
                timed_out = len(_writes(ledger.in_phase("locked")))
                samples = await metrics_when(
                    probe,
                    service.metrics_url,
                    lambda seen: (
                        metric(seen, "user_service_db_errors_total", kind="statement_timeout")
                        >= timed_out
                    ),
                )
        finally:
            await locker.close()
            await probe.aclose()

    locked = ledger.in_phase("locked")
    writes = _writes(locked)
    assert writes, ledger.summary(locked)
    timeline = [
        (o.op, o.status, round(o.started - locked_at, 2), round(o.duration, 2), o.detail)
        for o in writes
    ] + [round(released - locked_at, 2)]
    # No write can succeed while the table is locked: whatever ended before the release
    # (less the time the release's own reply takes to arrive) was cancelled.
    ended_locked = [o for o in writes if o.ended < released - 0.1]
    assert ended_locked and {o.status for o in ended_locked} == {504}, timeline
    # A write may first wait for a pooled connection (at most the pool timeout, or it would
    # be a 503) and only then start its statement: one that started more than a pool wait
    # plus a statement timeout before the release must have been cancelled, not left waiting.
    cancelled = [o for o in writes if o.started < released - WRITE_DEADLINE]
    assert cancelled and {o.status for o in cancelled} == {504}, timeline
    assert {o.status for o in writes} <= {200, 201, 504}, ledger.summary(writes)
    assert not _slow(locked, DEADLINE), _slow(locked, DEADLINE)
    # Reads of cached users go on; a read that missed (its user was just updated) waits
    # on the lock like a write.
    reads = [o for o in locked if o.op == "read"]
    assert reads and {o.status for o in reads} <= {200, 504}, ledger.summary(reads)
    assert cached_read.status_code == 200, cached_read.text  # served from Redis, table locked
    assert status == 200 and body["checks"]["database"] == "up", body
    assert metric(samples, "user_service_db_errors_total", kind="statement_timeout") >= len(writes)
    for phase, outcomes in (
        ("warm-up", _before(ledger, "warm-up", locked_at)),
        ("released", ledger.in_phase("released")),
    ):
        failed = ledger.failed(outcomes)
        assert not failed, (phase, ledger.summary(failed))
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault=f"DB slow: users table locked {released - locked_at:.0f} s (statement timeout 1 s)",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(ledger.failed()),
        failures_expected="504 on writes while locked",
        rows_checked=rows,
        recovery_seconds=recovery,
        notes=f"locked phase: {ledger.summary(locked)}; "
        f"slowest {max(o.duration for o in locked):.2f}s",
    )


async def test_database_cut_fails_fast_and_the_pool_recovers(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    """Every connection to PostgreSQL is reset and new ones refused for 4 s: database
    requests fail fast with 503, cached reads go on, readiness is 503; when the database
    is back the pool reconnects by itself (pre-ping), with no restart."""
    ledger = Ledger("cut")
    with _proxied_service(fault_database, "cut") as (proxy, service):
        probe = httpx.AsyncClient()
        try:
            async with _load(ledger, service.base_url) as load:
                await asyncio.sleep(2)
                cut_at = await _switch(ledger, "cut", lambda: proxy.set_mode("refuse"))
                await asyncio.sleep(1.5)
                cut_status, cut_body = await _ready(probe, service.base_url)
                # The worker that answered readiness may not be the one that answers the
                # scrape: its samples arrive within a flush interval.
                cut_metrics = await metrics_when(
                    probe,
                    service.metrics_url,
                    lambda seen: (
                        metric(seen, "user_service_dependency_up", dependency="database") == 0
                        and metric(seen, "user_service_db_errors_total", kind="unavailable") > 0
                    ),
                )
                await asyncio.sleep(2.5)
                restored = await _switch(ledger, "restored", lambda: proxy.set_mode("pass"))

                async def recovered() -> bool:
                    status, _ = await _ready(probe, service.base_url)
                    return status == 200 and any(
                        o.ok for o in ledger.in_phase("restored", "signup")
                    )

                await wait_for(recovered, timeout=15)
                recovery = time.monotonic() - restored
                await asyncio.sleep(2)
                ledger.phase = "steady"
                await asyncio.sleep(2)
                await load.stop()
                final_status, _ = await _ready(probe, service.base_url)
        finally:
            await probe.aclose()

    cut = ledger.in_phase("cut")
    writes = [o for o in cut if o.op in {"signup", "update"}]
    assert writes and {o.status for o in writes} <= {503}, ledger.summary(writes)
    assert all(o.retry_after for o in writes)
    assert not _slow(cut, DEADLINE), _slow(cut, DEADLINE)
    assert cut_status == 503 and cut_body["checks"]["database"] == "down", cut_body
    assert metric(cut_metrics, "user_service_dependency_up", dependency="database") == 0
    assert metric(cut_metrics, "user_service_db_errors_total", kind="unavailable") > 0
    for phase, outcomes in (
        ("warm-up", _before(ledger, "warm-up", cut_at)),
        ("steady", ledger.in_phase("steady")),
    ):
        failed = ledger.failed(outcomes)
        assert not failed, (phase, ledger.summary(failed), _errors("cut"))
    assert final_status == 200
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault="DB cut: connections reset and refused for 4 s",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(ledger.failed()),
        failures_expected="503 on writes (and uncached reads) while cut",
        rows_checked=rows,
        recovery_seconds=recovery,
        notes=f"cut phase: {ledger.summary(cut)}; slowest {max(o.duration for o in cut):.2f}s",
    )


async def test_database_partition_fails_within_the_timeouts(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    """The network to PostgreSQL goes silent for 10 s, well past DEADLINE (nothing arrives,
    nothing fails, as in a partition or a dead host). Requests must still end with 503/504
    within the configured timeouts instead of hanging until the network heals; readiness is
    503."""
    ledger = Ledger("partition")
    with _proxied_service(fault_database, "partition") as (proxy, service):
        probe = httpx.AsyncClient()
        try:
            async with _load(ledger, service.base_url, timeout=30) as load:
                await asyncio.sleep(2)
                stalled = await _switch(ledger, "partitioned", lambda: proxy.set_mode("stall"))
                await asyncio.sleep(2)
                status, body = await _ready(probe, service.base_url)
                await asyncio.sleep(8)
                healed = await _switch(ledger, "healed", lambda: proxy.set_mode("pass"))

                async def recovered() -> bool:
                    ready, _ = await _ready(probe, service.base_url)
                    return ready == 200 and any(o.ok for o in ledger.in_phase("healed", "signup"))

                await wait_for(recovered, timeout=20)
                recovery = time.monotonic() - healed
                await asyncio.sleep(2)
                ledger.phase = "steady"
                await asyncio.sleep(2)
                await load.stop()
        finally:
            await probe.aclose()

    # Every request in flight at any time during the partition, whenever it started.
    partitioned = [
        o for o in ledger.outcomes if o.ended > stalled + 0.2 and o.started < healed - 0.3
    ]
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault="DB partitioned: network silent 10 s",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(ledger.failed()),
        failures_expected="503/504 within the timeouts while partitioned",
        rows_checked=rows,
        recovery_seconds=recovery,
        notes=f"partitioned phase: {ledger.summary(partitioned)}; slowest "
        f"{max((o.duration for o in partitioned), default=0):.2f}s (deadline {DEADLINE}s)",
    )
    assert status == 503 and body["checks"]["database"] == "down", body
    # No request may hang for the length of the partition.
    assert not _slow(partitioned, DEADLINE), _slow(partitioned, DEADLINE)
    # A database request that began well before the network healed must have ended with
    # 503/504; one that began near the end may legitimately succeed after it.
    db_bound = [
        o for o in partitioned if o.op in {"signup", "update"} and o.started < healed - DEADLINE
    ]
    assert db_bound
    assert {o.status for o in db_bound} <= {503, 504}, ledger.summary(db_bound)
    for phase, outcomes in (
        ("warm-up", _before(ledger, "warm-up", stalled)),
        ("steady", ledger.in_phase("steady")),
    ):
        failed = ledger.failed(outcomes)
        assert not failed, (phase, ledger.summary(failed))


async def test_pool_exhaustion_answers_503_fast_with_retry_after(
    fault_database: str, fault_report: Callable[..., None]
) -> None:
    """Each database round trip takes 0.5 s, the cache is off, and 24 reads of distinct
    users arrive at once for 2 workers x (pool 2 + overflow 1) = 6 connections: the excess
    waits DB_POOL_TIMEOUT and gets 503 with Retry-After, the timeout counter moves, and
    nothing hangs."""
    ledger = Ledger("pool")
    burst = 24
    with _proxied_service(
        fault_database, "pool", CACHE_ENABLED="false", DB_CONNECT_TIMEOUT="10"
    ) as (proxy, service):
        base = service.base_url
        load = LoadClient(ledger, lambda: [base], users=2, timeout=30)
        probe = httpx.AsyncClient()
        try:
            await load.prepare()
            user = ledger.users[0]
            headers = {"Authorization": f"Bearer {user.token}"}
            before = await fetch_metrics(probe, service.metrics_url)
            proxy.latency = 0.5
            ledger.phase = "exhausted"

            async def readiness_during_burst() -> list[int]:
                statuses = []
                for _ in range(4):
                    await asyncio.sleep(0.3)
                    statuses.append((await probe.get(f"{base}/readyz", timeout=5)).status_code)
                return statuses

            readiness = asyncio.create_task(readiness_during_burst())
            # Distinct ids: concurrent reads of one id share a single load (single flight),
            # so each of these needs a connection of its own. Unknown ids: each is a 404
            # straight from the database.
            results = await asyncio.gather(
                *(
                    load.request("read", "GET", f"/api/v1/users/{uuid.uuid4()}", headers=headers)
                    for _ in range(burst)
                )
            )
            ready_during = await readiness
            proxy.latency = 0.0
            ledger.phase = "after"

            async def healthy() -> bool:
                outcome, _ = await load.request(
                    "read", "GET", f"/api/v1/users/{user.id}", headers=headers
                )
                ready, _ = await _ready(probe, base)
                return outcome.ok and ready == 200

            recovery = await wait_for(healthy, timeout=10)
            for _ in range(20):
                await load.request("read", "GET", f"/api/v1/users/{user.id}", headers=headers)
            rejected_count = sum(1 for outcome, _ in results if outcome.status == 503)
            after = await metrics_when(
                probe,
                service.metrics_url,
                lambda seen: (
                    metric(seen, "user_service_db_pool_checkout_timeouts_total")
                    - metric(before, "user_service_db_pool_checkout_timeouts_total")
                    >= rejected_count
                ),
            )
        finally:
            await load.aclose()
            await probe.aclose()

    outcomes = [outcome for outcome, _ in results]
    rejected = [o for o in outcomes if o.status == 503]
    served = [o for o in outcomes if o.status == 404]
    assert len(served) + len(rejected) == burst, ledger.summary(outcomes)
    assert len(rejected) >= burst - 2 * 3 * 2, ledger.summary(outcomes)
    assert rejected, "the pool was never exhausted"
    for outcome in rejected:
        assert outcome.retry_after, outcome
        assert "No database connection became free" in outcome.detail, outcome.detail
        # Fast: the pool timeout plus the latency of the one round trip a rejected request
        # may already have made, never a hang.
        assert POOL_TIMEOUT * 0.9 <= outcome.duration <= POOL_TIMEOUT + 2.5, outcome.duration
    timeouts = metric(after, "user_service_db_pool_checkout_timeouts_total") - metric(
        before, "user_service_db_pool_checkout_timeouts_total"
    )
    assert timeouts >= len(rejected), (timeouts, len(rejected))
    after_outcomes = ledger.in_phase("after")
    assert all(o.ok for o in after_outcomes[-20:]), ledger.summary(after_outcomes)
    rows = await check_rows(fault_database, ledger)
    fault_report(
        fault=f"Pool exhausted: {burst} concurrent reads, 6 connections, +0.5 s/round trip",
        requests_sent=len(ledger.outcomes),
        requests_failed=len(rejected),
        failures_expected="503 + Retry-After for the excess",
        rows_checked=rows,
        recovery_seconds=recovery,
        notes=f"burst: {len(served)} x 404 (served), {len(rejected)} x 503 in "
        f"{min(o.duration for o in rejected):.2f}-{max(o.duration for o in rejected):.2f}s; "
        f"checkout timeouts counter +{timeouts:.0f}; /readyz during the burst {ready_during}",
    )
