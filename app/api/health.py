"""Probes: /livez never touches a dependency; /readyz checks the database, schema and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from app.infra.redis import RedisUnavailableError
from app.infra.schema import ShippedMigrations, current_revision
from app.observability.metrics import record_dependency
from app.wiring import Resources

router = APIRouter(tags=["health"])

_LIVE = orjson.dumps({"status": "ok"})
_DRAINING = orjson.dumps({"status": "draining"})


def _json(body: Any, status_code: int) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status_code, media_type="application/json")


@router.get("/livez", include_in_schema=False)
async def livez() -> Response:
    return _json(_LIVE, 200)


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    if request.app.state.draining:
        return _json(_DRAINING, 503)
    resources: Resources = request.app.state.resources
    timeout = resources.settings.readiness_timeout_seconds
    database, schema = await _check_database(request, resources, timeout)
    redis = await _check_redis(resources, timeout)
    ready = database == "up" and schema != "behind"
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {"database": database, "schema": schema, "redis": redis},
    }
    return _json(body, 200 if ready else 503)


async def _check_database(
    request: Request, resources: Resources, timeout_seconds: float
) -> tuple[str, str]:
    migrations: ShippedMigrations | None = request.app.state.migrations
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            resources.probe_engine.connect() as connection,
        ):
            await connection.execute(text("SELECT 1"))
            revision = await current_revision(connection) if migrations else None
    except Exception:
        record_dependency("database", up=False)
        return "down", "unknown"
    record_dependency("database", up=True)
    if migrations is None:
        return "up", "unknown"
    state = migrations.state_of(revision)
    record_dependency("schema", up=state != "behind")
    return "up", state


async def _check_redis(resources: Resources, timeout_seconds: float) -> str:
    if resources.redis.embedded:
        return "embedded"
    try:
        async with asyncio.timeout(timeout_seconds):
            await resources.redis.call("readiness", resources.redis.client.ping)
    except (RedisUnavailableError, TimeoutError):
        record_dependency("redis", up=False)
        return "down"
    record_dependency("redis", up=True)
    return "up"
