"""HTTP RED metrics: the `http_*` series dashboards and alerts read, and the scraped text.

The names, labels and types are prometheus-fastapi-instrumentator's (the contract the
dashboards were built on); RequestContextMiddleware records them, so a request pays for one
middleware, label children looked up once per (method, handler, status), no Request or
Response objects built just to be measured, and, in multiprocess mode, one lock for all
its samples.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

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
from app.observability.metric_values import BufferedValue, ValueStore
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


class _Buffered:
    """One route's sample values when they are this process's buffered values (multiprocess
    mode): a request adds its ten numbers under one lock, without the ten metric-method
    calls (each a validation, a lock and a dirty check of its own) of the public API.

    It reads prometheus_client's children's value attributes (`_value`, `_count`, `_sum`,
    `_buckets`, `_upper_bounds`); `of` gives None when they are not there, and the public
    API records instead (tests hold that the pinned version has them)."""

    __slots__ = (
        "highr_bounds",
        "highr_buckets",
        "highr_sum",
        "in_progress",
        "latency_bounds",
        "latency_buckets",
        "latency_sum",
        "request_count",
        "request_sum",
        "response_count",
        "response_sum",
        "store",
        "totals",
    )

    def __init__(self, store: ValueStore, values: dict[str, Any]) -> None:
        self.store = store
        self.in_progress: BufferedValue = values["in_progress"]
        self.request_count: BufferedValue = values["request_count"]
        self.request_sum: BufferedValue = values["request_sum"]
        self.response_count: BufferedValue = values["response_count"]
        self.response_sum: BufferedValue = values["response_sum"]
        self.highr_sum: BufferedValue = values["highr_sum"]
        self.highr_bounds: list[float] = values["highr_bounds"]
        self.highr_buckets: list[BufferedValue] = values["highr_buckets"]
        self.latency_sum: BufferedValue = values["latency_sum"]
        self.latency_bounds: list[float] = values["latency_bounds"]
        self.latency_buckets: list[BufferedValue] = values["latency_buckets"]
        # The http_requests_total value of each status class (status // 100) seen so far.
        self.totals: dict[int, BufferedValue] = {}

    @classmethod
    def of(cls, collectors: _Collectors, route: _Route) -> _Buffered | None:
        values: dict[str, Any] = {
            "in_progress": getattr(route.in_progress, "_value", None),
            "request_count": getattr(route.request_size, "_count", None),
            "request_sum": getattr(route.request_size, "_sum", None),
            "response_count": getattr(route.response_size, "_count", None),
            "response_sum": getattr(route.response_size, "_sum", None),
            "highr_sum": getattr(collectors.latency_highr, "_sum", None),
            "latency_sum": getattr(route.latency, "_sum", None),
        }
        singles = list(values.values())
        for name, histogram in (("highr", collectors.latency_highr), ("latency", route.latency)):
            bounds = getattr(histogram, "_upper_bounds", None)
            buckets = getattr(histogram, "_buckets", None)
            if not isinstance(bounds, list | tuple) or not isinstance(buckets, list):
                return None
            if len(bounds) != len(buckets) or not bounds or bounds[-1] != math.inf:
                return None
            values[f"{name}_bounds"] = [float(bound) for bound in bounds]
            values[f"{name}_buckets"] = buckets
            singles.extend(buckets)
        store = _store_of(singles)
        return None if store is None else cls(store, values)

    def total(self, route: _Route, status: int) -> BufferedValue | None:
        found = self.totals.get(status // 100)
        if found is None:
            value: Any = getattr(route.total(status), "_value", None)
            if _store_of([value]) is not self.store:
                return None
            self.totals[status // 100] = found = value
        return found


def _store_of(values: list[Any]) -> ValueStore | None:
    """The one store all these values live in, or None (not buffered values, or several)."""
    if not values or not all(isinstance(value, BufferedValue) for value in values):
        return None
    stores = {getattr(type(value), "_store", None) for value in values}
    store = stores.pop()
    return store if not stores and isinstance(store, ValueStore) else None


class _Route:
    """The children of one (method, handler): resolved on its first request."""

    __slots__ = (
        "_collectors",
        "buffered",
        "handler",
        "in_progress",
        "latency",
        "method",
        "request_size",
        "response_size",
        "started",
        "total_by_status",
    )

    def __init__(self, collectors: _Collectors, method: str, handler: str) -> None:
        self._collectors = collectors
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
        self.buffered = _Buffered.of(collectors, self)
        # Called as a request starts: the in-progress gauge's own value when buffered.
        self.started: Callable[[], None] = (
            partial(self.buffered.in_progress.inc, 1)
            if self.buffered is not None
            else self.in_progress.inc
        )

    def total(self, status: int) -> Counter:
        group = f"{status // 100}xx"
        counter = self.total_by_status.get(group)
        if counter is None:  # a status outside 1xx-5xx: counted under its own group
            counter = self._collectors.total.labels(
                method=self.method, status=group, handler=self.handler
            )
        return counter


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
        buffered = route.buffered
        # NaN falls in no bucket with the public API, and in the first one with bisect.
        if buffered is not None and seconds == seconds:
            total = buffered.total(route, status)
            if total is not None:
                buffered.store.inc_all(
                    (
                        buffered.in_progress,
                        total,
                        buffered.request_count,
                        buffered.request_sum,
                        buffered.response_count,
                        buffered.response_sum,
                        buffered.highr_sum,
                        # The first bucket whose bound is >= seconds, as Histogram.observe.
                        buffered.highr_buckets[bisect_left(buffered.highr_bounds, seconds)],
                        buffered.latency_sum,
                        buffered.latency_buckets[bisect_left(buffered.latency_bounds, seconds)],
                    ),
                    (-1, 1, 1, request_bytes, 1, response_bytes, seconds, 1, seconds, 1),
                )
                return
        route.in_progress.dec()
        route.total(status).inc()
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
