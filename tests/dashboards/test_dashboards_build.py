"""Offline checks of the generated dashboards: fresh, shipped by the chart, and well-formed.

A panel without a description or unit, a raw counter, a hard-coded window or a metric the
service does not export is the usual road to "No data" and misread graphs; each has a test.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from dashboards import build, selectors
from dashboards.pods import CLUSTER_METRICS
from dashboards.pods import PANELS as PODS_PANELS
from tests.dashboards.panel_queries import DASHBOARD_DIR, dashboards, panels, queries

COUNTER_SUFFIXES = ("_total", "_count", "_bucket", "_sum")
REQUIRED_VARIABLES = {"datasource", "job", "namespace", "pod"}
MIN_SCHEMA_VERSION = 39  # Grafana 10.4+; older epochs of the SDK emit 36 or less


def test_committed_json_and_chart_copies_are_current() -> None:
    """Rebuilding changes nothing: the JSON in git, the chart's copies and the rule copy."""
    files = build.outputs()
    assert build.stale(files) == [], "run: python -m dashboards.build"
    assert build.strays(files) == [], "the chart ships a dashboard the build does not make"
    for stem in build.DASHBOARDS:
        assert (DASHBOARD_DIR / f"{stem}.json").read_bytes() == (
            build.CHART_DASHBOARDS / f"{stem}.json"
        ).read_bytes()
    assert build.RULES.read_bytes() == build.CHART_RULES.read_bytes()


def test_build_check_mode_reports_current() -> None:
    assert build.main(["--check"]) == 0


def test_every_dashboard_exists_with_current_schema() -> None:
    models = dashboards()
    assert set(models) == {
        "user-service-overview",
        "user-service-dependencies",
        "user-service-auth",
    }
    for uid, model in models.items():
        assert model["schemaVersion"] >= MIN_SCHEMA_VERSION, uid
        names = {v["name"] for v in model["templating"]["list"]}
        assert names >= REQUIRED_VARIABLES, f"{uid} lacks variables {REQUIRED_VARIABLES - names}"


def test_job_variable_all_never_widens_to_every_job() -> None:
    """`up` and `http_*` are not ours alone: All on job must stay the discovered job list."""
    for uid, model in dashboards().items():
        job = next(v for v in model["templating"]["list"] if v["name"] == "job")
        assert job["query"] == "label_values(user_service_build_info, job)", uid
        assert not job.get("allValue"), f"{uid}: job All must not be a catch-all regex"


@pytest.mark.parametrize(
    "uid", ["user-service-overview", "user-service-dependencies", "user-service-auth"]
)
def test_every_panel_has_title_description_unit_and_queries(uid: str) -> None:
    model = dashboards()[uid]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(model):
        title = panel.get("title", "")
        assert title, f"untitled panel in {uid}"
        assert len(panel.get("description", "")) >= 60, f"{title}: say what a bad value means"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel["datasource"]["uid"] == "${datasource}", title
        assert panel.get("targets"), f"{title}: no query"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{title} overflows the grid"


def _metric_occurrences(expr: str) -> list[str]:
    return re.findall(r"([a-zA-Z_][a-zA-Z0-9_:]*)\s*\{", expr)


def test_queries_use_rate_interval_and_never_graph_raw_counters() -> None:
    for query in queries():
        expr = query.expr
        where = f"{query.dashboard} / {query.panel} / {query.ref_id}"
        windows = re.findall(r"\[([^\]]+)\]", expr)
        assert all(w == selectors.RATE for w in windows), f"{where}: hard-coded window {windows}"
        for name in _metric_occurrences(expr):
            if name.endswith(COUNTER_SUFFIXES):
                raw = len(re.findall(rf"(?<![\w:]){re.escape(name)}\s*\{{", expr))
                rated = len(re.findall(rf"(?:rate|increase)\(\s*{re.escape(name)}\s*\{{", expr))
                assert raw == rated, f"{where}: {name} used without rate()"


def test_status_matchers_use_the_instrumentators_grouping() -> None:
    for query in queries():
        for value in re.findall(r'status=~?"([^"]*)"', query.expr):
            assert set(value.split("|")) <= {"1xx", "2xx", "3xx", "4xx", "5xx"}, query


def test_queries_select_by_the_shared_variables() -> None:
    """Every raw series is narrowed by job and namespace; recording rules by job and namespace;
    the cluster's series (another exporter's job) by namespace and this service's pods."""
    for query in queries():
        for match in re.finditer(r"([a-zA-Z_][\w:]*)\s*\{([^}]*)\}", query.expr):
            name, matchers = match.groups()
            if name in CLUSTER_METRICS:
                assert 'namespace=~"$namespace"' in matchers, f"{query.panel}: {name}"
                assert 'pod=~"$pod"' in matchers or 'horizontalpodautoscaler=~"$service"' in (
                    matchers
                ), f"{query.panel}: {name} not narrowed to this service"
                continue
            if name == "ALERTS":
                assert 'job=~"$job"' in matchers and 'namespace=~"$namespace"' in matchers
                continue
            assert 'job=~"$job"' in matchers, f"{query.panel}: {name} not filtered by $job"
            assert 'namespace=~"$namespace"' in matchers, f"{query.panel}: {name}"
            if ":" not in name:
                assert 'pod=~"$pod"' in matchers, f"{query.panel}: {name} not filtered by $pod"


def _panel_count(model: dict[str, Any]) -> int:
    return sum(1 for _ in panels(model))


def test_dashboards_cover_the_required_panels() -> None:
    titles = {p["title"] for m in dashboards().values() for p in panels(m)}
    for needle in (
        "Request rate by route",
        "Error ratio (5xx) by route",
        "Slowest routes: p95 (top 5)",
        "Firing alerts (this service)",
        "Dependencies up (1 = up)",
        "Dependency errors (database, pool, Redis)",
        *PODS_PANELS,
        "Latency heatmap (selected routes)",
        "Event loop lag p99 by pod",
        "Availability objective",
        "Latency objective (< 250 ms)",
        "Availability budget remaining (30d)",
        "Availability burn rate (1h)",
        "In-flight requests by route",
        "Pods up and workers alive",
        "Running versions (pods per build)",
        "Pool connections: checked out vs size and maximum",
        "Checkout wait p95 / p99",
        "Checkout timeouts",
        "Query latency p95 / p99 by operation",
        "Cache hit ratio",
        "Cache errors and bypasses (share of lookups)",
        "Redis errors by component",
        "Redis circuit breaker open (workers)",
        "Rate-limit rejections by scope",
        "Authentication outcomes",
        "Active sessions",
        "Refresh token reuse (session revoked)",
        "Throttled logins (per account) vs failures",
        "Admission served from PostgreSQL",
    ):
        assert needle in titles, needle
    assert all(
        _panel_count(m) >= 15 for m in dashboards().values() if m["uid"] != "user-service-auth"
    )
    auth = {p["title"] for p in panels(dashboards()["user-service-auth"])}
    for needle in (
        "Active signing key age",
        "Next key published",
        "JWKS requests by result",
        "Tokens with an unknown kid",
        "Introspection requests by result",
        "Introspection latency p50 / p95 / p99",
    ):
        assert needle in auth, needle
