"""Probes: /livez never touches a dependency; /readyz checks the database, schema and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from app.infra.readiness import check_database, check_redis
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
    # Side by side, so the worst case is one timeout, not their sum: the probe's own
    # timeout (the chart checks it) must cover it.
    database, redis = await asyncio.gather(
        check_database(resources.probe_engine, request.app.state.migrations, timeout),
        check_redis(resources.redis, timeout),
    )
    ready = database.reachable and database.schema != "behind"
    body: dict[str, Any] = {
        "status": "ok" if ready else "unavailable",
        "checks": {
            "database": "up" if database.reachable else "down",
            "schema": database.schema,
            "redis": redis,
        },
    }
    if database.reason:
        # Why, in the database's or the pooler's own words: an operator reading a failed
        # probe should not need the logs to tell a refusal from a timeout.
        body["reasons"] = {"database": database.reason}
    return _json(body, 200 if ready else 503)
