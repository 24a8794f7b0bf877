"""What a cached read's Prometheus samples cost, in process and in multiprocess mode: the
service's recording (a request's HTTP samples added under one lock into the worker's buffered
values) beside the same samples through prometheus_client's metric methods; CPU microseconds
per request.

usage: python -m scripts.bench.metric_recording [ROUNDS]

A request is what the middleware and the cache record for a cached GET /api/v1/users/{id}:
the in-progress gauge up, then the request count, two size summaries, two latency histograms
and the in-progress gauge down, and the cache hit. The two ways alternate round by round on
the same label children, and the minimum and median of the rounds are printed (a shared
machine only ever adds time).
"""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

# Before prometheus_client is imported: it picks multiprocess mode from this at import.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metric-bench-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

from app.observability.http_metrics import HttpMetrics
from app.observability.metrics import record_cache

REQUESTS = 20000
HANDLER = "/api/v1/users/{user_id}"


def _request(public: bool) -> Callable[[], None]:
    metrics = HttpMetrics()
    route = metrics.route("GET", HANDLER)
    if public:
        route.buffered = None
        route.started = route.in_progress.inc
    elif route.buffered is None:
        raise SystemExit("buffered recording not in use: is PROMETHEUS_MULTIPROC_DIR set?")

    def request() -> None:
        route.started()
        record_cache("hit")
        metrics.finished(route, 200, 0, 321, 0.00042)

    return request


def _round(request: Callable[[], None]) -> float:
    started = time.process_time()
    for _ in range(REQUESTS):
        request()
    return (time.process_time() - started) / REQUESTS * 1e6


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    ways = {"service (one lock)": _request(False), "metric methods": _request(True)}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, request in ways.items():
            seconds[name].append(_round(request))
    print(f"{rounds} rounds of {REQUESTS} cached reads' samples, multiprocess mode")
    for name, values in seconds.items():
        print(
            f"{name:20s} min {min(values):6.2f} us/request"
            f"  median {statistics.median(values):6.2f} us/request"
        )


if __name__ == "__main__":
    main()
