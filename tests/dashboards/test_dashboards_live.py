"""Proof against a real Prometheus: every panel query and every recording rule returns data.

Starts the service under gunicorn (2 workers) on a fresh database, a Debian Prometheus that
scrapes it every second with the rule file loaded, drives traffic, then evaluates each
dashboard query (variables resolved through the same label_values lookups Grafana makes)
and each recorded series through the HTTP API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import yaml

from dashboards.pods import PANELS as PODS_PANELS
from tests.dashboards import promserver
from tests.dashboards.grafana_queries import RATE_INTERVAL, assert_panel_has_data, variable_options
from tests.dashboards.panel_queries import (
    RULES,
    PanelQuery,
    dashboards,
    has_data,
    panels,
    queries,
    substitute,
)
from tests.dashboards.traffic import INTROSPECTION_CLIENT, Traffic
from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import running_service

DATABASE = "user_service_dash_test"
REDIS_URL = redis_url(4)
TRAFFIC_SECONDS = 20

# Panels that only show data during a fault: (dashboard uid, panel title) -> why.
# Counters the app pre-creates at 0 return a 0 series, which is data, so they need no entry.
ALLOWED_EMPTY: dict[tuple[str, str], str] = {
    ("user-service-overview", title): "cluster metrics (cAdvisor, kube-state-metrics): "
    "there is no kubelet or kube-state-metrics outside a cluster"
    for title in PODS_PANELS
}

SERVICE_ENV = {
    "REDIS_URL": REDIS_URL,
    # Shared PostgreSQL (max_connections=100): 2 workers x (2 + 2) connections at most.
    "DB_POOL_SIZE": "2",
    "DB_MAX_OVERFLOW": "2",
    "JWT_SECRET_KEY": "dashboards-proof-secret-key-0123456789abcdef",
    "SERVICE_VERSION": "0.0.0-dashtest",
    "GIT_COMMIT": "dashtest",
    "OTEL_SDK_DISABLED": "true",
    "LOG_LEVEL": "WARNING",
    # Low enough that the bursts below provoke 429s in both scopes even when a fixed window
    # boundary splits them in two (37 logins > 2 x 15, 850 requests > 2 x 400), while the
    # steady per-user loops (~300 requests a minute) stay under the API limit.
    "INTROSPECTION_CLIENTS": ":".join(INTROSPECTION_CLIENT),
    "RATE_LIMIT_LOGIN": "15/minute",
    "RATE_LIMIT_API": "400/minute",
}


@dataclass
class Proof:
    prometheus: promserver.PrometheusServer
    start: float  # traffic began
    at: float  # traffic ended: instant queries are evaluated here
    variables: dict[str, str]
    statuses: dict[int, int]


def _resolve_variables(prometheus: promserver.PrometheusServer) -> dict[str, str]:
    """Fill the variables from the same label_values() lookups the dashboards define."""
    options = variable_options(prometheus)
    assert options.jobs == [promserver.JOB]
    assert options.namespaces == [promserver.NAMESPACE]
    assert options.services == [promserver.SERVICE]
    assert options.pods == [promserver.POD]
    assert "/api/v1/users/me" in options.handlers, options.handlers
    return options.all_selected()


def _wait_for_first_scrape(prometheus: promserver.PrometheusServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prometheus.query("up == 1", time.time()):
            return
        time.sleep(0.5)
    raise AssertionError(f"target never scraped:\n{prometheus.api('targets')}")


@pytest.fixture(scope="module")
def proof() -> Iterator[Proof]:
    with redis.Redis.from_url(REDIS_URL) as client:
        client.flushdb()  # our own DB number: stale limiter windows would skew the 429s
    database_url = fresh_database(DATABASE)
    env = {**SERVICE_ENV, "DATABASE_URL": database_url}
    with running_service(env, workers=2) as service:
        target = f"127.0.0.1:{service.metrics_port}"
        with promserver.running_prometheus(target, RULES) as prometheus:
            _wait_for_first_scrape(prometheus)
            traffic = Traffic(service.base_url)
            start = time.time()
            traffic.run(users=4, seconds=TRAFFIC_SECONDS, login_attempts=32, api_burst=850)
            # Two more scrapes and rule evaluations, then evaluate as of the end of traffic.
            at = time.time()
            time.sleep(3)
            variables = _resolve_variables(prometheus)
            yield Proof(prometheus, start, at, variables, dict(traffic.statuses))


def _panel_ids() -> list[str]:
    return [f"{q.dashboard}:{q.panel}:{q.ref_id}" for q in queries()]


def test_traffic_covered_successes_client_errors_and_limits(proof: Proof) -> None:
    statuses = proof.statuses
    assert statuses.get(200, 0) > 100, statuses
    assert statuses.get(201, 0) >= 5, statuses
    for code in (401, 404, 422, 429):
        assert statuses.get(code, 0) > 0, f"no {code} in {statuses}"


@pytest.mark.parametrize("query", queries(), ids=_panel_ids())
def test_panel_query_returns_data(proof: Proof, query: PanelQuery) -> None:
    assert_panel_has_data(
        proof.prometheus,
        query,
        proof.variables,
        proof.start,
        proof.at,
        may_be_empty=(query.dashboard, query.panel) in ALLOWED_EMPTY,
    )


def test_the_check_catches_a_panel_without_data(proof: Proof) -> None:
    """The same check on a pod that does not exist must fail, or the proof proves nothing."""
    query = next(q for q in queries() if q.panel == "Request rate by route")
    expr = substitute(query.expr, {**proof.variables, "pod": "no-such-pod"}, RATE_INTERVAL)
    assert not has_data(proof.prometheus.query_range(expr, proof.start, proof.at, step="2s"))


def _records() -> list[str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r]


@pytest.mark.parametrize("record", _records())
def test_recording_rulehas_data(proof: Proof, record: str) -> None:
    result = proof.prometheus.query(record, proof.at)
    assert has_data(result), f"{record} recorded nothing"
    if not record.startswith("user_service:slo_"):
        labels = result[0]["metric"]
        assert (
            labels.get("job") == promserver.JOB and labels.get("namespace") == promserver.NAMESPACE
        )


def test_every_rule_evaluates_without_error(proof: Proof) -> None:
    groups = proof.prometheus.api("rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    broken = [(rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] != "ok"]
    assert broken == []
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert len(loaded) == sum(len(group["rules"]) for group in doc["groups"])


def test_traffic_moved_the_counters_the_dashboards_explain(proof: Proof) -> None:
    """Not just zero series: the traffic really hit the cache, auth and the limiter."""
    v = proof.variables
    sel = f'job=~"{v["job"]}", namespace=~"{v["namespace"]}"'
    for expr in (
        f'sum(increase(user_service_cache_requests_total{{{sel}, result="hit"}}[5m]))',
        f'sum(increase(user_service_auth_events_total{{{sel}, event="login_success"}}[5m]))',
        f'sum(increase(user_service_auth_events_total{{{sel}, event="login_failure"}}[5m]))',
        f"sum(increase(user_service_rate_limit_rejections_total{{{sel}}}[5m]))",
        f"sum(increase(user_service_db_query_duration_seconds_count{{{sel}}}[5m]))",
        f'min(user_service_dependency_up{{{sel}, dependency="database"}})',
    ):
        result = proof.prometheus.query(expr, proof.at)
        assert result and float(result[0]["value"][1]) > 0, expr


def test_no_alert_fires_on_healthy_traffic(proof: Proof) -> None:
    """Cause alerts stay quiet on a healthy service (pending is allowed: windows are short)."""
    alerts = proof.prometheus.api("alerts")["alerts"]
    firing = [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]
    assert firing == []


def test_allow_list_names_real_panels() -> None:
    titles = {(uid, p["title"]) for uid, m in dashboards().items() for p in panels(m)}
    assert set(ALLOWED_EMPTY) <= titles
