"""A real Prometheus finds the release's pods through Kubernetes service discovery, exactly as
the chart's ServiceMonitor selects them, loads the chart's PrometheusRule, and every
dashboard query returns data after some traffic through the Service.

The scrape configuration is generated from the ServiceMonitor `helm template` renders (see
scrape.py), so a chart whose monitor no longer matches the Service's labels or port name, or
an app that stops serving /metrics on that port, leaves the panels empty and fails here.
Prometheus (built from its Go module, cached) runs on the host with the cluster's
kubeconfig: pod IPs are routable from the host. The kubelet's cAdvisor is scraped as
kube-prometheus-stack does, for the container series of the Pods row.
"""

from __future__ import annotations

import base64
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.pods import CLUSTER_METRICS
from dashboards.pods import PANELS as PODS_PANELS
from tests.dashboards import promserver
from tests.dashboards.grafana_queries import assert_panel_has_data, variable_options
from tests.dashboards.panel_queries import (
    PanelQuery,
    has_data,
    queries,
)
from tests.dashboards.traffic import Traffic

from .kube import REPO, Cluster
from .release import Release
from .scrape import scrape_configs

BUILD_SCRIPT = REPO / "scripts" / "cluster" / "build-prometheus.sh"
JOB = "user-service"
TRAFFIC_SECONDS = 20
SCRAPE_INTERVAL = "2s"
# The Pods row divides cAdvisor's series by kube-state-metrics' (limits, restarts, HPA), and
# kube-state-metrics is not part of this cluster (its module is not on the Go module proxy).
# Those panels are checked below with their cAdvisor half only.
WITHOUT_KUBE_STATE_METRICS = {("user-service-overview", title) for title in PODS_PANELS}


@dataclass
class Monitored:
    prometheus: promserver.PrometheusServer
    release: Release
    rule_count: int
    start: float
    at: float
    variables: dict[str, str]


def _prometheus_binary() -> str:
    """The pinned Prometheus, built once into the cache (scripts/test.sh builds it up front)."""
    directory = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=True, timeout=3600
    ).stdout.strip()
    return str(Path(directory) / "prometheus")


def _credential_file(user: dict[str, Any], key: str, workdir: Path) -> str:
    """A kubeconfig credential as a file path (kind and minikube embed them as *-data)."""
    if key in user:
        return str(user[key])
    path = workdir / key
    path.write_bytes(base64.b64decode(user[f"{key}-data"]))
    return str(path)


def _kubelet_scrape(kubeconfig: str, workdir: Path) -> dict[str, Any]:
    """cAdvisor through each node's kubelet, authenticated with the kubeconfig's client cert."""
    config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])["user"]
    return {
        "job_name": "kubelet",
        # cAdvisor's answer is large; the dashboards read it at a coarser step anyway.
        "scrape_interval": "5s",
        "scrape_timeout": "5s",
        "honor_labels": True,
        "scheme": "https",
        "metrics_path": "/metrics/cadvisor",
        "kubernetes_sd_configs": [{"role": "node", "kubeconfig_file": kubeconfig}],
        "tls_config": {
            "ca_file": _credential_file(cluster["cluster"], "certificate-authority", workdir),
            "cert_file": _credential_file(user, "client-certificate", workdir),
            "key_file": _credential_file(user, "client-key", workdir),
        },
    }


def _wait_for_targets(monitored: promserver.PrometheusServer, release: Release) -> None:
    pods = {p["metadata"]["name"] for p in release.app_pods()}

    def scraped() -> bool:
        up = monitored.query(f'up{{job="{JOB}"}} == 1', time.time())
        return {sample["metric"].get("pod") for sample in up} == pods

    release.cluster.wait_until(
        f"Prometheus to scrape the pods {sorted(pods)} as job {JOB}", scraped, timeout=90
    )


def _resolve_variables(prometheus: promserver.PrometheusServer, release: Release) -> dict[str, str]:
    """The variables from the dashboards' own label_values() lookups, checked against the
    cluster: one job, the release's namespace, its Service (named like its HPA), its pods."""
    options = variable_options(prometheus)
    assert options.jobs == [JOB]
    assert options.namespaces == [release.namespace]
    assert options.services == [release.fullname]
    assert set(options.pods) >= {p["metadata"]["name"] for p in release.app_pods()}
    assert "/api/v1/users/me" in options.handlers, options.handlers
    return options.all_selected()


@pytest.fixture(scope="module")
def monitored(
    cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitored]:
    workdir = tmp_path_factory.mktemp("prometheus")
    binary = _prometheus_binary()
    # The chart's own objects, with a 2s scrape so a short run gives every rate() several
    # samples, and a timeout a CPU-starved pod still meets.
    monitor = yaml.safe_load(
        release.template(
            "templates/servicemonitor.yaml",
            "metrics.serviceMonitor.enabled=true",
            f"metrics.serviceMonitor.interval={SCRAPE_INTERVAL}",
            f"metrics.serviceMonitor.scrapeTimeout={SCRAPE_INTERVAL}",
        )
    )
    rule = yaml.safe_load(
        release.template("templates/prometheusrule.yaml", "metrics.prometheusRule.enabled=true")
    )
    rules = workdir / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    settings = {
        "global": {"evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            *scrape_configs(monitor, cluster.kubeconfig),
            _kubelet_scrape(cluster.kubeconfig, workdir),
        ],
    }
    with promserver.prometheus_with_config(binary, settings) as prometheus:
        _wait_for_targets(prometheus, release)
        start = time.time()
        Traffic(release.service_url()).run(
            users=2, seconds=TRAFFIC_SECONDS, login_attempts=12, api_burst=50
        )
        at = time.time()
        # Two more scrapes and rule evaluations, then evaluate as of the end of traffic.
        time.sleep(5)
        yield Monitored(
            prometheus,
            release,
            sum(len(group["rules"]) for group in rule["spec"]["groups"]),
            start,
            at,
            _resolve_variables(prometheus, release),
        )


def _panel_ids() -> list[str]:
    return [f"{q.dashboard}:{q.panel}:{q.ref_id}" for q in queries()]


@pytest.mark.parametrize("query", queries(), ids=_panel_ids())
def test_dashboard_query_returns_data(monitored: Monitored, query: PanelQuery) -> None:
    assert_panel_has_data(
        monitored.prometheus,
        query,
        monitored.variables,
        monitored.start,
        monitored.at,
        may_be_empty=(query.dashboard, query.panel) in WITHOUT_KUBE_STATE_METRICS,
    )


@pytest.mark.parametrize("metric", sorted(m for m in CLUSTER_METRICS if m.startswith("container_")))
def test_cadvisor_series_name_the_release_pods(monitored: Monitored, metric: str) -> None:
    """The container half of the Pods row: cAdvisor labels the release's pods and container
    the way the panels select them."""
    selector = (
        f'namespace=~"{monitored.variables["namespace"]}", pod=~"{monitored.variables["pod"]}", '
        'container!="", container!="POD"'
    )
    result = monitored.prometheus.query(f"{metric}{{{selector}}}", monitored.at)
    pods = {sample["metric"]["pod"] for sample in result}
    assert pods >= {p["metadata"]["name"] for p in monitored.release.app_pods()}, result


def test_the_service_variable_names_the_release_hpa(monitored: Monitored) -> None:
    """The HPA panel selects `horizontalpodautoscaler` by the service variable: it must be the
    name of the HPA the chart created (kube-state-metrics labels its series with that name)."""
    release = monitored.release
    hpas = [
        item["metadata"]["name"]
        for item in release.cluster.get("hpa", namespace=release.namespace)["items"]
        if item["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == release.name
    ]
    assert hpas, "the release has no HorizontalPodAutoscaler"
    # The variable is a PromQL string's regex: its doubled backslashes are one in the regex.
    pattern = re.compile(monitored.variables["service"].replace("\\\\", "\\"))
    assert all(pattern.fullmatch(name) for name in hpas), (monitored.variables["service"], hpas)


def test_chart_rules_load_and_evaluate(monitored: Monitored) -> None:
    groups = monitored.prometheus.api("rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == monitored.rule_count
    broken = [(rule["name"], rule["health"], rule.get("lastError")) for rule in loaded]
    assert [b for b in broken if b[1] != "ok"] == []


def test_recording_rules_record_the_release(monitored: Monitored) -> None:
    groups = monitored.prometheus.api("rules")["groups"]
    records = [r["name"] for g in groups for r in g["rules"] if r["type"] == "recording"]
    assert records
    for record in records:
        result = monitored.prometheus.query(record, monitored.at)
        assert has_data(result), f"{record} recorded nothing"
        if not record.startswith("user_service:slo_"):
            labels = result[0]["metric"]
            assert labels.get("job") == JOB, (record, labels)
            assert labels.get("namespace") == monitored.release.namespace, (record, labels)
