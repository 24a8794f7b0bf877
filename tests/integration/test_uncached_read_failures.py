"""The uncached read on a real PostgreSQL, failing every way it can: each failure reaches the
client as the same problem, moves the same metric and leaves the pool as it found it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.models import User
from app.services.users import serialize_user
from tests.faults.tools import TcpProxy
from tests.support.app_harness import AppHarness


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def _users_locked(harness: AppHarness) -> AsyncIterator[None]:
    """Every statement on the users table waits until the block ends."""
    async with harness.app.state.resources.probe_engine.connect() as locker:
        await locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        yield
        await locker.rollback()


@pytest.fixture
def proxy() -> AsyncIterator[TcpProxy]:
    started = TcpProxy().start()
    yield started
    started.stop()


def _through(proxy: TcpProxy, database_url: str) -> str:
    return make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)


async def _read(harness: AppHarness, user_id: str, headers: dict[str, str]) -> Any:
    return await harness.client.get(f"/api/v1/users/{user_id}", headers=headers, timeout=30)


async def _all_connections_back() -> None:
    """Every pooled connection is back (background work, such as the session-cache lease
    keeper, may hold one for a moment: a leaked one never comes back)."""
    for _ in range(50):
        if _value("user_service_db_pool_checked_out_connections") == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("a pooled connection was never given back")


def _assert_problem(response: Any, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"], response.text


async def _reads_again(harness: AppHarness, user_id: str, headers: dict[str, str]) -> None:
    """After the failure every connection is back, and the same read succeeds."""
    await _all_connections_back()
    assert (await _read(harness, user_id, headers)).status_code == 200


async def test_a_read_past_the_statement_timeout_is_a_504(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(CACHE_ENABLED="false", DB_STATEMENT_TIMEOUT_MS=300)
    user, headers = await harness.user_with_token("statement-timeout@example.com")
    before = _value("user_service_db_errors_total", kind="statement_timeout")
    async with _users_locked(harness):
        response = await _read(harness, user["id"], headers)
    _assert_problem(response, 504, "statement timeout")
    assert _value("user_service_db_errors_total", kind="statement_timeout") == before + 1
    await _reads_again(harness, user["id"], headers)


async def test_a_read_the_network_never_answers_ends_at_the_client_deadline_with_504(
    make_harness: Callable[..., Any], proxy: TcpProxy, database_url: str
) -> None:
    harness: AppHarness = await make_harness(
        CACHE_ENABLED="false",
        DB_STATEMENT_TIMEOUT_MS=300,  # the client's own deadline: 1.3 s
        DATABASE_URL=_through(proxy, database_url),
    )
    user, headers = await harness.user_with_token("stalled-read@example.com")
    await _read(harness, user["id"], headers)
    proxy.set_mode("stall")
    try:
        started = asyncio.get_running_loop().time()
        response = await _read(harness, user["id"], headers)
        took = asyncio.get_running_loop().time() - started
    finally:
        proxy.set_mode("pass")
    _assert_problem(response, 504, "did not answer in time")
    assert 1.2 <= took <= 6, took
    await _reads_again(harness, user["id"], headers)


async def test_a_read_on_a_cut_connection_is_a_503_and_the_pool_recovers(
    make_harness: Callable[..., Any], proxy: TcpProxy, database_url: str
) -> None:
    # No pre-ping, one connection and nothing else using it: the read, however late it
    # comes on a busy machine, is the one that meets the dead connection.
    harness: AppHarness = await make_harness(
        CACHE_ENABLED="false",
        DATABASE_URL=_through(proxy, database_url),
        DB_POOL_PRE_PING="false",
        DB_POOL_SIZE=1,
        DB_MAX_OVERFLOW=0,
    )
    await harness.app.state.resources.session_keeper.stop()
    user, headers = await harness.user_with_token("cut-read@example.com")
    assert (await _read(harness, user["id"], headers)).status_code == 200
    before = _value("user_service_db_errors_total", kind="unavailable")
    # Existing connections are reset; the next ones are accepted again at once.
    proxy.set_mode("refuse")
    proxy.set_mode("pass")
    response = await _read(harness, user["id"], headers)
    _assert_problem(response, 503, "unreachable")
    assert response.headers["retry-after"] == "1"
    assert _value("user_service_db_errors_total", kind="unavailable") == before + 1
    # The disconnect invalidated the pool: the next read gets a new connection, no restart.
    accepted = proxy.connections_accepted
    assert (await _read(harness, user["id"], headers)).status_code == 200
    assert proxy.connections_accepted > accepted


async def test_a_read_that_finds_no_free_connection_is_a_503(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(
        CACHE_ENABLED="false", DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=0.3
    )
    user, headers = await harness.user_with_token("starved-read@example.com")
    timeouts = _value("user_service_db_pool_checkout_timeouts_total")
    async with harness.app.state.resources.engine.connect() as held:
        response = await _read(harness, user["id"], headers)
        await held.rollback()
    _assert_problem(response, 503, "No database connection became free")
    assert response.headers["retry-after"] == "1"
    assert _value("user_service_db_pool_checkout_timeouts_total") >= timeouts + 1
    assert (await _read(harness, user["id"], headers)).status_code == 200


async def test_a_cancelled_read_gives_its_connection_back(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(
        CACHE_ENABLED="false", DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=2
    )
    await harness.app.state.resources.session_keeper.stop()
    user, headers = await harness.user_with_token("cancelled-read@example.com")
    async with _users_locked(harness):
        pending = asyncio.create_task(_read(harness, user["id"], headers))
        # The read waits on the lock, holding the only connection of its pool (the process's
        # gauge also counts the other apps of this test process).
        pool = harness.app.state.resources.engine.sync_engine.pool
        for _ in range(100):
            if pool.checkedout() == 1:
                break
            await asyncio.sleep(0.05)
        assert pool.checkedout() == 1
        await asyncio.sleep(0.2)  # into the statement
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
    await _all_connections_back()
    # The one connection is usable again (or replaced): nothing waits for a leaked one.
    assert (await _read(harness, user["id"], headers)).status_code == 200


async def test_the_read_answers_the_bytes_the_model_serialises_and_times_its_statement(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(CACHE_ENABLED="false")
    _, headers = await harness.user_with_token("reader@example.com")
    ids = [
        (await harness.sign_up("plain@example.com"))["id"],
        (await harness.sign_up("named@example.com", full_name='Zoë "Ω" \\ \u2028 \t x'))["id"],
    ]
    engine = harness.app.state.resources.engine
    async with engine.begin() as connection:
        # A timestamp with no fraction of a second serialises without one.
        await connection.execute(
            text("UPDATE users SET created_at = date_trunc('second', created_at) WHERE email = :e"),
            {"e": "plain@example.com"},
        )
    statements = _value("user_service_db_query_duration_seconds_count", operation="SELECT")
    for user_id in ids:
        response = await _read(harness, user_id, headers)
        assert response.status_code == 200, response.text
        async with harness.app.state.resources.sessions() as session:
            user = await session.get(User, user_id)
            assert user is not None
            assert response.content == serialize_user(user)
    after = _value("user_service_db_query_duration_seconds_count", operation="SELECT")
    assert after - statements >= len(ids)
    missing = await _read(harness, "00000000-0000-4000-8000-000000000000", headers)
    _assert_problem(missing, 404, "does not exist")
