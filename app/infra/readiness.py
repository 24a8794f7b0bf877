"""Readiness checks of the dependencies: the database (and its schema) and Redis."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.infra.database import database_error_cause
from app.infra.redis import RedisGateway, RedisUnavailableError
from app.infra.schema import ShippedMigrations, current_revision
from app.observability.metrics import record_dependency

RedisState = Literal["up", "down", "embedded"]


@dataclass(frozen=True, slots=True)
class DatabaseState:
    reachable: bool
    # current, behind, ahead (see ShippedMigrations.state_of), or unknown.
    schema: str
    # Why the database is unreachable (empty when it is reachable).
    reason: str = ""


async def check_database(
    engine: AsyncEngine, migrations: ShippedMigrations | None, timeout_seconds: float
) -> DatabaseState:
    """One connection, `SELECT 1` and the schema revision, within `timeout_seconds`."""
    try:
        async with asyncio.timeout(timeout_seconds), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            revision = await current_revision(connection) if migrations else None
    except TimeoutError:
        record_dependency("database", up=False)
        reason = f"no answer within {timeout_seconds:g}s"
        return DatabaseState(reachable=False, schema="unknown", reason=reason)
    except Exception as error:
        record_dependency("database", up=False)
        reason = database_error_cause(error)
        return DatabaseState(reachable=False, schema="unknown", reason=reason)
    record_dependency("database", up=True)
    if migrations is None:
        return DatabaseState(reachable=True, schema="unknown")
    schema = migrations.state_of(revision)
    record_dependency("schema", up=schema != "behind")
    return DatabaseState(reachable=True, schema=schema)


async def check_redis(redis: RedisGateway, timeout_seconds: float) -> RedisState:
    """PING within `timeout_seconds`; "embedded" for the in-process development store."""
    if redis.embedded:
        return "embedded"
    try:
        async with asyncio.timeout(timeout_seconds):
            await redis.call("readiness", redis.client.ping)
    except (RedisUnavailableError, TimeoutError):
        record_dependency("redis", up=False)
        return "down"
    record_dependency("redis", up=True)
    return "up"
