"""HTTP RED metrics from prometheus-fastapi-instrumentator and the /metrics endpoint."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_fastapi_instrumentator import Instrumentator, metrics

from app.observability.metrics import HTTP_LATENCY_BUCKETS

EXCLUDED_HANDLERS = ["/livez", "/readyz", "/metrics"]


@cache
def _default_http_metrics() -> Callable[[metrics.Info], None]:
    # Created once per process: the collectors register globally, and a second app in the
    # same process (tests) must share them rather than fail on duplicate names.
    instrumentation = metrics.default(latency_lowr_buckets=HTTP_LATENCY_BUCKETS)
    assert instrumentation is not None
    return instrumentation


_instrumented_once = False


def instrument_http(app: FastAPI) -> None:
    global _instrumented_once
    # The in-progress gauge is created per app and registers globally, so only the first
    # app of a process gets one (a second app per process exists only in tests).
    with_inprogress = not _instrumented_once
    _instrumented_once = True
    instrumentator = Instrumentator(
        should_group_status_codes=True,
        # Unknown paths are counted under handler "none", never by raw path.
        should_group_untemplated=True,
        should_ignore_untemplated=False,
        should_instrument_requests_inprogress=with_inprogress,
        inprogress_labels=True,
        excluded_handlers=EXCLUDED_HANDLERS,
    )
    instrumentator.add(_default_http_metrics())
    instrumentator.instrument(app)


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


def metrics_response() -> Response:
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
