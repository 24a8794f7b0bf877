"""The series names the running service can export, read from the code that defines them.

app/observability/metrics.py is the source of truth for the service's own metrics; the HTTP
ones come from prometheus-fastapi-instrumentator's default set, built here into a private
registry exactly as the app builds it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from dashboards.pods import CLUSTER_METRICS

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def _expand(name: str, kind: str) -> set[str]:
    return {name + suffix for suffix in SUFFIXES.get(kind, ("",))}


def service_series() -> set[str]:
    from app.observability import metrics

    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= _expand(value._name, str(value._type))
    return names


def http_series() -> set[str]:
    from prometheus_fastapi_instrumentator import metrics as instrumentator_metrics

    from app.observability.metrics import HTTP_LATENCY_BUCKETS

    registry = CollectorRegistry()
    instrumentator_metrics.default(latency_lowr_buckets=HTTP_LATENCY_BUCKETS, registry=registry)
    names: set[str] = set()
    for family in registry.collect():
        names |= _expand(family.name, family.type)
    # The in-progress gauge is added by Instrumentator itself, not by metrics.default().
    names.add("http_requests_inprogress")
    return names


# Prometheus' own scrape health and alert state, and the cluster's exporters (cAdvisor,
# kube-state-metrics) that the Pods row and an optional rule group read.
PLATFORM_SERIES = {"up", "ALERTS"} | CLUSTER_METRICS
