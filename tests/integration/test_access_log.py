"""Under gunicorn with 2 workers: one access-log line per request, whole and in the pinned
shape, every one of them on stdout after a SIGTERM that follows the last answer at once."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson

from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import running_service

REQUESTS = 300
# The keys of an access line, in order (log pipelines and dashboards parse it): the call's
# fields, the event, the bound request id, then level, logger and timestamp.
ACCESS_KEYS = [
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "client",
    "event",
    "request_id",
    "level",
    "logger",
    "timestamp",
]


async def _burst(base_url: str, run: str) -> None:
    """Many requests in flight at once, so the workers' loop steps each finish several."""
    limits = httpx.Limits(max_connections=24)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def one(n: int) -> None:
            response = await client.get(
                f"/api/v1/users/{n}", headers={"X-Request-ID": f"{run}-{n}"}
            )
            assert response.status_code == 401

        await asyncio.gather(*(one(n) for n in range(REQUESTS)))


def test_every_request_has_one_whole_line_after_sigterm() -> None:
    env = {
        "DATABASE_URL": fresh_database("user_service_access_log"),
        "REDIS_URL": redis_url(11),
        "LOG_LEVEL": "INFO",
    }
    run = f"burst-{uuid.uuid4().hex[:8]}"
    with running_service(env, workers=2) as service:
        asyncio.run(_burst(service.base_url, run))
        assert service.stop() == 0  # SIGTERM right after the last answer
        log = service.log_path.read_bytes()

    records = [orjson.loads(line) for line in log.splitlines() if line.strip()]  # all whole
    access = [r for r in records if r.get("logger") == "app.access" and r["event"] == "request"]
    mine = sorted(int(r["request_id"].rsplit("-", 1)[1]) for r in access if run in r["request_id"])
    assert mine == list(range(REQUESTS))  # none lost, none written twice
    line = next(r for r in access if r["request_id"] == f"{run}-7")
    assert list(line)[: len(ACCESS_KEYS)] == ACCESS_KEYS
    assert set(list(line)[len(ACCESS_KEYS) :]) <= {"trace_id", "span_id"}
    assert line["route"] == "/api/v1/users/{user_id}" and line["path"] == "/api/v1/users/7"
    assert (line["method"], line["status"], line["client"]) == ("GET", 401, "127.0.0.1")
    assert isinstance(line["duration_ms"], float) and line["level"] == "info"
