"""Databases for tests: the run's own names (see isolation.py), created fresh on the local
PostgreSQL and migrated with the service's own command, dropped when the run ends."""

from __future__ import annotations

import os

import redis

from loadtests import local_service
from loadtests.local_service import REPO, migrate
from tests.support.isolation import database_name

__all__ = ["ADMIN_DSN", "CREATED", "REPO", "WAITING_ON_ME", "async_url", "migrate"]

ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# How many backends wait on a lock this connection holds. pg_locks, not pg_stat_activity: a
# transaction keeps its first statistics snapshot, which misses a backend that connects later.
WAITING_ON_ME = (
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
