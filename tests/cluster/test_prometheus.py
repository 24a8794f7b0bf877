"""Prometheus with Kubernetes service discovery scrapes the pods the chart's ServiceMonitor selects.

The cluster has no Prometheus Operator, so the ServiceMonitor the chart renders is turned
into the scrape configuration the operator would generate from it (endpoint-slice discovery
in the monitor's namespaces, kept by the Service's labels and the endpoint's port name,
`job` from the Service name, the monitor's own relabelings after). Debian's Prometheus then
discovers and scrapes the release's pods directly, and every dashboard query must return
data for traffic sent through the Service.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.dashboards import promserver
from tests.dashboards.panel_queries import RULES, PanelQuery, queries, substitute
from tests.dashboards.traffic import Traffic

from .kube import CHART, Cluster
from .release import Release, restricted_namespace

NAMESPACE = "users-metrics"
RATE_INTERVAL = "15s"


def _label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape_config(monitor: dict[str, Any], kubeconfig: str) -> dict[str, Any]:
    """What the Prometheus Operator generates for the monitor's first endpoint."""
    spec = monitor["spec"]
    (endpoint,) = spec["endpoints"]
    keep = [
        {
            "action": "keep",
            "source_labels": [f"__meta_kubernetes_service_label_{_label(key)}"],
            "regex": re.escape(value),
        }
        for key, value in spec["selector"]["matchLabels"].items()
    ]
    keep.append(
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
            "regex": endpoint["port"],
        }
    )
    targets = [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
        {"target_label": "endpoint", "replacement": endpoint["port"]},
    ]
    meta = monitor["metadata"]
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/0",
        "metrics_path": endpoint.get("path", "/metrics"),
        # Faster than the chart's default so a short test sees many samples.
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "kubernetes_sd_configs": [
            {
                "role": "endpointslice",
                "kubeconfig_file": kubeconfig,
                "namespaces": {"names": spec["namespaceSelector"]["matchNames"]},
            }
        ],
        "relabel_configs": keep + targets + list(endpoint.get("relabelings", [])),
        "metric_relabel_configs": list(endpoint.get("metricRelabelings", [])),
    }


@pytest.fixture(scope="module")
def scraped(
    cluster: Cluster,
) -> Iterator[tuple[promserver.PrometheusServer, Release, float, float]]:
    restricted_namespace(cluster, NAMESPACE)
    metrics = Release(cluster, name="metrics", namespace=NAMESPACE, redis_db=3)
    # Low limits, so the traffic provokes the 429s the dashboards chart.
    metrics.install(config={"RATE_LIMIT_LOGIN": "15/minute", "RATE_LIMIT_API": "400/minute"})
    rendered = cluster.helm(
        "template",
        metrics.name,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/servicemonitor.yaml",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ).stdout
    monitor = yaml.safe_load(rendered)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [scrape_config(monitor, cluster.kubeconfig)],
    }
    try:
        with promserver.running_config(config) as prometheus:
            start = time.time()
            Traffic(metrics.service_url()).run(
                users=2, seconds=30, login_attempts=32, api_burst=850
            )
            at = time.time()
            time.sleep(3)
            yield prometheus, metrics, start, at
    finally:
        metrics.uninstall()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _has_data(result: list[dict[str, Any]]) -> bool:
    points = [s["value"] for s in result if "value" in s]
    points += [p for s in result for p in s.get("values", [])]
    return any(not math.isnan(float(value)) for _, value in points)


def test_discovery_finds_exactly_the_release_pods(
    scraped: tuple[promserver.PrometheusServer, Release, float, float],
) -> None:
    prometheus, metrics, _, _ = scraped
    active = prometheus.api("targets")["activeTargets"]
    pods = sorted(t["labels"]["pod"] for t in active if t["health"] == "up")
    assert pods == sorted(p["metadata"]["name"] for p in metrics.app_pods())
    assert {t["labels"]["job"] for t in active} == {metrics.fullname}


@pytest.mark.parametrize("query", queries(), ids=lambda q: f"{q.dashboard}:{q.panel}:{q.ref_id}")
def test_dashboard_query_returns_data(
    scraped: tuple[promserver.PrometheusServer, Release, float, float], query: PanelQuery
) -> None:
    prometheus, metrics, start, at = scraped
    pods = "(" + "|".join(p["metadata"]["name"] for p in metrics.app_pods()) + ")"
    handlers = prometheus.api(
        "label/handler/values", **{"match[]": f'http_requests_total{{namespace="{NAMESPACE}"}}'}
    )
    variables = {
        "datasource": "prometheus",
        "job": re.escape(metrics.fullname).replace("\\", "\\\\"),
        "namespace": NAMESPACE,
        "pod": pods,
        "handler": "(" + "|".join(re.escape(h).replace("\\", "\\\\") for h in handlers) + ")",
    }
    expr = substitute(query.expr, variables, RATE_INTERVAL)
    result = prometheus.query_range(expr, start, at, step="2s")
    assert _has_data(result), f"{query.panel} ({query.ref_id}) shows no data:\n{expr}\n{result}"
