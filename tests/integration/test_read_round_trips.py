"""What an uncached read sends to PostgreSQL: one statement, no transaction around it, and a
liveness test only for a connection that sat idle (which recovers a connection the server
dropped meanwhile)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import event, text

from tests.support.app_harness import AppHarness

# Marks a statement as reported by SQLAlchemy's cursor events. A read sent to the driver
# directly shows in the driver's query logger too, one sent as a prepared statement does not.
_EXECUTED = "executed: "


def _log_statements(harness: AppHarness) -> list[str]:
    """What goes to PostgreSQL on the app's pooled connections: the statements SQLAlchemy
    executes, and what the driver sends on its own (BEGIN, ROLLBACK, the pre-ping), which
    only its query logger sees."""
    sent: list[str] = []
    watched: weakref.WeakSet[Any] = weakref.WeakSet()
    engine = harness.app.state.resources.engine.sync_engine
    pool = engine.pool

    def executed(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # BEGIN goes out inside the driver's execute: ask the driver afterwards.
        in_transaction = conn.connection.driver_connection.is_in_transaction()
        sent.append(("BEGIN; " if in_transaction else "") + _EXECUTED + " ".join(statement.split()))

    event.listen(engine, "after_cursor_execute", executed)

    def watch(dbapi_connection: Any, *_args: Any) -> None:
        raw = dbapi_connection.driver_connection
        if raw not in watched:
            raw.add_query_logger(lambda record: sent.append(record.query.strip()))
            watched.add(raw)

    event.listen(pool, "checkout", watch)
    return sent


async def _read(harness: AppHarness, user_id: str, headers: dict[str, str]) -> None:
    response = await harness.client.get(f"/api/v1/users/{user_id}", headers=headers)
    assert response.status_code == 200, response.text


async def test_uncached_read_is_one_statement_without_a_transaction(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(CACHE_ENABLED="false")
    # The lease keeper's own transactions would mix with the reads' statements.
    await harness.app.state.resources.session_keeper.stop()
    user, headers = await harness.user_with_token("one-statement@example.com")
    await _read(harness, user["id"], headers)  # warms the pool
    sent = _log_statements(harness)
    for _ in range(3):
        await _read(harness, user["id"], headers)
    reads = [s for s in sent if "FROM users" in s and s.startswith(_EXECUTED)]
    assert len(reads) == 3, sent
    assert len([s for s in sent if "FROM users" in s]) <= 6, sent
    # A read needs no BEGIN/ROLLBACK around its one statement.
    assert not [s for s in sent if s.startswith("BEGIN")], sent
    # Back-to-back checkouts skip the liveness test.
    assert ";" not in sent, sent


async def test_a_connection_idle_past_the_window_is_tested_and_replaced_when_dead(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(
        CACHE_ENABLED="false", DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0
    )
    # Nothing else may check the one connection out (and find it dead) before the read.
    await harness.app.state.resources.session_keeper.stop()
    user, headers = await harness.user_with_token("idle-ping@example.com")
    await _read(harness, user["id"], headers)
    engine = harness.app.state.resources.engine
    async with engine.connect() as connection:
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    # The server drops the pooled connection while it is idle (a restart, a failover).
    probe = harness.app.state.resources.probe_engine
    async with probe.connect() as admin:
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await admin.commit()
    await asyncio.sleep(0.8)  # past the alive-bypass window: the next checkout tests it
    await _read(harness, user["id"], headers)
    async with engine.connect() as connection:
        replaced = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert replaced != pid


async def _command_counts(redis_client: aioredis.Redis) -> dict[str, int]:
    stats = await redis_client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_cached_read_costs_three_redis_commands_in_one_round_trip(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    """Session state, lease and the cached user in one MGET, the rate-limit count in INCRBY
    and PEXPIREAT: no script, no separate GETs."""
    user, headers = await harness.user_with_token("three-commands@example.com")
    await _read(harness, user["id"], headers)  # loads the user into the cache
    before = await _command_counts(redis_client)
    for _ in range(4):
        await _read(harness, user["id"], headers)
    after = await _command_counts(redis_client)
    used = {name: after[name] - before.get(name, 0) for name in after}
    used = {name: calls for name, calls in used.items() if calls and name != "info"}
    # The lease keeper renews the lease now and then (SET): everything else is the reads'.
    used.pop("set", None)
    assert used == {"mget": 4, "incrby": 4, "pexpireat": 4}, used
