"""Records HTTP requests in multiprocess mode and prints the http_* lines of the scrape.

Run as a program with PROMETHEUS_MULTIPROC_DIR set before anything imports
prometheus_client. The first argument says how samples are recorded: `buffered` (the
service as it runs) or `public` (each sample through prometheus_client's own metric
methods, the way the service recorded them before it added a request's numbers under one
lock). The second says what is recorded: `direct` (a fixed list of requests given to
HttpMetrics) or `app` (real requests through the service over ASGI, with DATABASE_URL and
REDIS_URL of the test's own, scraped on the metrics port). In `app` the middleware's clock
steps by fixed amounts so both runs see the same durations. It prints the scrape's http_*
lines and cache lines, then a JSON line saying whether the buffered recording was in use.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import types
import uuid
from typing import Any

from app.observability import http_metrics, request_context
from app.observability.http_metrics import HttpMetrics, metrics_text

HANDLER = "/api/v1/users/{user_id}"
# Durations at, just above and between bucket bounds, beyond every finite bound, and NaN.
SECONDS = (0.0, 0.005, 0.0050001, 0.01, 0.0004, 0.25, 2.5, 7.5, 59.9, 60.0, 100.0, math.inf)
STATUSES = (200, 201, 204, 301, 101, 404, 401, 429, 500, 503, 600, 0)


def _public() -> None:
    """Every route records through prometheus_client's public metric methods."""
    http_metrics._Buffered.of = classmethod(lambda cls, collectors, route: None)  # type: ignore[method-assign,assignment,arg-type,return-value]


def _direct() -> bool:
    metrics = HttpMetrics()
    routes = [metrics.route(m, h) for m in ("GET", "PATCH") for h in (HANDLER, "/api/v1/x")]
    for number, (status, seconds) in enumerate(itertools.product(STATUSES, SECONDS)):
        route = routes[number % len(routes)]
        route.started()
        metrics.finished(route, status, number * 3, number * 7 + 1, seconds)
    routes[0].started()  # one request still in progress
    nan_route = metrics.route("GET", "/api/v1/nan")
    nan_route.started()
    metrics.finished(nan_route, 200, 0, 0, math.nan)
    return routes[0].buffered is not None


class _SteppingClock:
    """perf_counter for the middleware: each reading advances by the next step."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._steps = itertools.cycle((0.0004, 0.003, 0.02, 0.0001, 0.3, 0.004, 1.7, 0.0))

    def perf_counter(self) -> float:
        self._now += next(self._steps)
        return self._now


async def _app() -> bool:
    from app.settings import Settings
    from tests.support.app_harness import start_harness

    request_context.time = types.SimpleNamespace(perf_counter=_SteppingClock().perf_counter)  # type: ignore[assignment]
    settings = Settings()
    harness, stop = await start_harness(settings)
    try:
        client = harness.client
        user, headers = await harness.user_with_token(f"scrape-{uuid.uuid4().hex[:8]}@example.com")
        url = f"/api/v1/users/{user['id']}"
        for _ in range(25):
            assert (await client.get(url, headers=headers)).status_code == 200
        assert (
            await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=headers)
        ).status_code == 404
        assert (await client.get(url)).status_code == 401
        assert (await client.get("/api/v1/nowhere")).status_code == 404
        scrape = await client.get(f"http://testserver:{settings.metrics_port}/metrics")
        assert scrape.status_code == 200
        text = scrape.text
    finally:
        await stop()
    buffered = HttpMetrics().route("GET", HANDLER).buffered is not None
    sys.stdout.write(_lines(text))
    return buffered


def _lines(text: str) -> str:
    families = ("http_", "user_service_cache_requests")
    wanted = (*families, *(f"# {kind} {name}" for kind in ("HELP", "TYPE") for name in families))
    return "".join(line + "\n" for line in text.splitlines() if line.startswith(wanted))


def main(recording: str, what: str) -> dict[str, Any]:
    if recording == "public":
        _public()
    if what == "direct":
        buffered = _direct()
        sys.stdout.write(_lines(metrics_text().decode()))
    else:
        buffered = asyncio.run(_app())
    return {"buffered": buffered}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
