"""Databases for tests: the run's own names (see isolation.py), created fresh on the local
PostgreSQL and migrated with the service's own command, dropped when the run ends."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import redis

from loadtests import local_service
from loadtests.local_service import REPO, migrate
from tests.support.isolation import database_name

T = TypeVar("T")

__all__ = ["ADMIN_DSN", "CREATED", "REPO", "async_url", "committed_under", "migrate"]

ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# How many backends wait on a lock this connection holds. pg_locks, not pg_stat_activity: a
# transaction keeps its first statistics snapshot, which misses a backend that connects later.
_WAITING_ON_ME = (
    "SELECT count(*) FROM pg_locks"
    " WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
)

# Databases this run created, dropped when the run ends (see tests/conftest.py).
CREATED: set[str] = set()


def async_url(database: str) -> str:
    """The SQLAlchemy URL of `database` (the run's own name for it) on the test server."""
    return local_service.database_url(database_name(database), ADMIN_DSN)


def empty_database(name: str, redis_url: str | None = None) -> str:
    """Drop and create database `name` without migrating it (a migration Job's first run),
    flush `redis_url`'s database if given, return the asyncpg URL."""
    name = database_name(name)
    CREATED.add(name)
    url = local_service.create_database(name, ADMIN_DSN)
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
    return url


def fresh_database(name: str) -> str:
    """Drop and create database `name`, migrate it to head, return its asyncpg URL."""
    name = database_name(name)
    CREATED.add(name)
    return local_service.fresh_database(name, ADMIN_DSN)


def drop_database(name: str) -> None:
    local_service.drop_database(database_name(name), ADMIN_DSN)


async def committed_under(
    database_url: str,
    statement: str,
    *args: object,
    racing: Callable[[], Awaitable[T]],
    describe: Callable[[T], str] = repr,
    within: float = 30,
) -> T:
    """Run `statement` in a transaction held open, start `racing()`, commit once it waits on a
    lock of that transaction, and return its result: a write committed between another's
    read and its write, made to happen every time."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(statement, *args)
        race = asyncio.ensure_future(racing())
        async with asyncio.timeout(within):
            while not await connection.fetchval(_WAITING_ON_ME):
                assert not race.done(), f"done without waiting: {describe(race.result())}"
                await asyncio.sleep(0.02)
        await transaction.commit()
        return await race
    finally:
        await connection.close()
