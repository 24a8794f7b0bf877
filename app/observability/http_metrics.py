"""HTTP RED metrics: the `http_*` series dashboards and alerts read, and the scraped text.

The names, labels and types are prometheus-fastapi-instrumentator's (the contract the
dashboards were built on); RequestContextMiddleware records them, so a request pays for one
middleware, label children looked up once per (method, handler, status), and no Request or
Response objects built just to be measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from app.observability import metric_values
from app.observability.metrics import HTTP_LATENCY_BUCKETS

EXCLUDED_HANDLERS = ["/livez", "/readyz"]
HIGHR_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5),
    *(3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60),
)


@dataclass(frozen=True, slots=True)
class _Collectors:
    total: Counter
    request_size: Summary
    response_size: Summary
    latency_highr: Histogram
    latency: Histogram
    in_progress: Gauge


@cache
def _collectors() -> _Collectors:
    # Created once per process: collectors register globally, and a second app in the same
    # process (tests) shares them.
    return _Collectors(
        total=Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ["method", "status", "handler"],
        ),
        request_size=Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
        ),
        response_size=Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
        ),
        latency_highr=Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more accurate "
            "percentile calculations. ",
            buckets=HIGHR_BUCKETS,
        ),
        latency=Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation "
            "by handler is important. ",
            ["method", "handler"],
            buckets=HTTP_LATENCY_BUCKETS,
        ),
        in_progress=Gauge(
            "http_requests_inprogress",
            "Number of HTTP requests in progress.",
            ["method", "handler"],
            multiprocess_mode="livesum",
        ),
    )


class _Route:
    """The children of one (method, handler): resolved on its first request."""

    __slots__ = (
        "handler",
        "in_progress",
        "latency",
        "method",
        "request_size",
        "response_size",
        "total_by_status",
    )

    def __init__(self, collectors: _Collectors, method: str, handler: str) -> None:
        self.method = method
        self.handler = handler
        self.in_progress = collectors.in_progress.labels(method=method, handler=handler)
        self.latency = collectors.latency.labels(method=method, handler=handler)
        self.request_size = collectors.request_size.labels(handler=handler)
        self.response_size = collectors.response_size.labels(handler=handler)
        self.total_by_status = {
            group: collectors.total.labels(method=method, status=group, handler=handler)
            for group in ("1xx", "2xx", "3xx", "4xx", "5xx")
        }


class HttpMetrics:
    """Records one request's http_* samples. In multiprocess mode they stay in this
    worker's memory and reach its memory-mapped file in batches (metric_values.py): a scrape
    counts this worker's requests up to the moment it is rendered, and another worker's up
    to one flush interval (a second) before it."""

    def __init__(self) -> None:
        self._collectors = _collectors()
        self._routes: dict[tuple[str, str], _Route] = {}

    def route(self, method: str, handler: str) -> _Route:
        found = self._routes.get((method, handler))
        if found is None:
            found = self._routes[(method, handler)] = _Route(self._collectors, method, handler)
        return found

    def finished(
        self,
        route: _Route,
        status: int,
        request_bytes: int,
        response_bytes: int,
        seconds: float,
    ) -> None:
        route.in_progress.dec()
        group = f"{status // 100}xx"
        counter = route.total_by_status.get(group)
        if counter is None:  # a status outside 1xx-5xx: counted under its own group
            counter = self._collectors.total.labels(
                method=route.method, status=group, handler=route.handler
            )
        counter.inc()
        route.request_size.observe(request_bytes)
        route.response_size.observe(response_bytes)
        self._collectors.latency_highr.observe(seconds)
        route.latency.observe(seconds)


@cache
def _registry() -> CollectorRegistry:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    # Under gunicorn every worker writes its samples to files in this directory;
    # whichever worker answers the scrape reads all of them.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def metrics_text() -> bytes:
    """Every worker's samples in the text exposition format (served on the metrics port)."""
    # This worker's own latest samples first; the others' are at most an interval old.
    metric_values.flush()
    return generate_latest(_registry())
