"""Databases for tests: created fresh on the local PostgreSQL and migrated with Alembic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import redis

from tests.support.isolation import database_name

REPO = Path(__file__).resolve().parents[2]
ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def async_url(database: str) -> str:
    """The SQLAlchemy URL of `database` on the test server."""
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database_name(database)}"


# Databases this run created, dropped when the run ends (see tests/conftest.py).
CREATED: set[str] = set()


async def _recreate(database: str) -> None:
    CREATED.add(database)
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()


def migrate(url: str) -> None:
    """Run the real `user-service migrate` command, as the chart's Job does."""
    env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "test"}
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def empty_database(name: str, redis_url: str | None = None) -> str:
    """Drop and create database `name` without migrating it (a migration Job's first run),
    flush `redis_url`'s database if given, return the asyncpg URL."""
    name = database_name(name)
    asyncio.run(_recreate(name))
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
    return async_url(name)


def fresh_database(name: str) -> str:
    """Drop and create database `name`, migrate it to head, return its asyncpg URL."""
    name = database_name(name)
    asyncio.run(_recreate(name))
    url = async_url(name)
    migrate(url)
    return url


def drop_database(name: str) -> None:
    name = database_name(name)

    async def _drop() -> None:
        connection = await asyncpg.connect(ADMIN_DSN)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(_drop())
