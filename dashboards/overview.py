"""The "Service overview" dashboard: traffic, errors, latency, SLOs and what is running.

It answers "are users hurting, since when, on which route" before anyone opens the
dependencies dashboard to ask why.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, timeseries
from grafana_foundation_sdk.models.common import BigValueTextMode
from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

from dashboards import pods, variables
from dashboards import selectors as sel
from dashboards.layout import Board, new_dashboard
from dashboards.panels import Query, Step, heatmap_panel, stat_panel, timeseries_panel

UID = "user-service-overview"
TITLE = "user-service / Service overview"

REQUESTS = "http_requests_total"
DEPENDENCY_UP = "user_service_dependency_up"
POOL_CHECKED_OUT = "user_service_db_pool_checked_out_connections"
POOL_MAX = "user_service_db_pool_max_connections"
BREAKER = "user_service_redis_breaker_open"
DB_ERRORS = "user_service_db_errors_total"
# Alerts of this service (its rules all start so), in the namespaces picked.
FIRING = 'alertstate="firing", alertname=~"UserService.*", job=~"$job", namespace=~"$namespace"'
# 5xx is the service's fault: always drawn red, whatever the palette picks.
RED = DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})
DURATION_BUCKET = "http_request_duration_seconds_bucket"
LOOP_LAG_BUCKET = "user_service_event_loop_lag_seconds_bucket"
AVAILABILITY = "user_service:slo_availability_objective"
LATENCY = "user_service:slo_latency_objective"
# Each objective's ratio of bad requests, recorded per window (the record name ends in it).
RATIOS = {
    AVAILABILITY: "user_service:http_request_error_ratio:rate",
    LATENCY: "user_service:http_request_slow_ratio:rate",
}


def _requests_by(by: str, extra: str = "") -> str:
    matchers = f"{sel.HTTP}{extra}"
    return f"sum by ({by}) ({sel.rate(REQUESTS, matchers)})"


def _error_ratio_by(by: str) -> str:
    # `or ... * 0` keeps routes with no 5xx at 0 instead of dropping them from the graph.
    errors = _requests_by(by, ', status="5xx"')
    total = _requests_by(by)
    return f"({errors} or {total} * 0) / {total}"


def _quantile(q: float, by: str) -> str:
    return sel.quantile(q, DURATION_BUCKET, by, sel.HTTP)


def _burn_rate(ratio_record: str, objective_record: str) -> str:
    return f"{ratio_record}{{{sel.RECORDED}}} / (1 - {sel.objective(objective_record)})"


def _budget_panel(title: str, description: str, window: str, objective: str) -> stat.Panel:
    """Share of the budget still unspent over `window`, from the SLO's ratio record."""
    return stat_panel(
        title,
        description,
        "percentunit",
        [Query(f"1 - {_burn_rate(RATIOS[objective] + window, objective)}", "{{namespace}}")],
        thresholds=[Step(None, "red"), Step(0.25, "orange"), Step(0.5, "green")],
        decimals=1,
    )


def _burn_panel(title: str, description: str, window: str, objective: str) -> stat.Panel:
    return stat_panel(
        title,
        description,
        "suffix:x",
        [Query(_burn_rate(RATIOS[objective] + window, objective), "{{namespace}}")],
        thresholds=[Step(None, "green"), Step(1, "orange"), Step(6, "red")],
        decimals=2,
    )


def _objective_panel(title: str, description: str, objective: str) -> stat.Panel:
    return stat_panel(
        title, description, "percentunit", [Query(f"max({objective})", "objective")], decimals=2
    )


def _burn_by_window_panel(title: str, description: str, objective: str) -> timeseries.Panel:
    """The burn rate over each window the alerts use."""
    return timeseries_panel(
        title,
        description,
        "suffix:x",
        [
            Query(_burn_rate(RATIOS[objective] + w, objective), f"{w} {{{{namespace}}}}")
            for w in ("5m", "30m", "1h", "6h")
        ],
        thresholds=[Step(None, "green"), Step(6, "orange"), Step(14.4, "red")],
    )


def _first_screen(board: Board) -> None:
    """What a paged SRE needs without scrolling (1920x1080): is the SLO burning, how fast,
    is an alert firing, and which dependency is at fault."""
    board.row("Is the SLO burning, and which dependency is at fault?")
    for panel in (
        _budget_panel(
            "Availability budget remaining (30d)",
            "Share of the 30-day error budget still unspent. Below 25% freeze risky changes; "
            "at or below 0% the objective is already missed for this window.",
            "30d",
            AVAILABILITY,
        ),
        _budget_panel(
            "Latency budget remaining (30d)",
            "Share of the 30-day latency budget (requests slower than 250 ms) still unspent. "
            "Below 25%: find the slow route before tuning anything else.",
            "30d",
            LATENCY,
        ),
        _burn_panel(
            "Availability burn rate (1h)",
            "How many times faster than sustainable the availability budget burns over the "
            "last hour. 1 spends exactly the budget in 30 days; 14.4 (with the 5m window also "
            "above) pages.",
            "1h",
            AVAILABILITY,
        ),
        _burn_panel(
            "Latency burn rate (1h)",
            "Burn rate of the latency budget over the last hour; 14.4 pages, above 1 the "
            "budget runs out before the month does.",
            "1h",
            LATENCY,
        ),
    ):
        board.add(panel, width=4, height=5)
    board.add(
        stat_panel(
            "Firing alerts (this service)",
            "Alerts of this service firing now in the selected namespaces (0 is good). Each "
            "one's runbook section is linked from the alert and from this dashboard's links; "
            "a burn-rate alert with a cause alert names the dependency.",
            "short",
            [
                Query(
                    f"count(ALERTS{{{FIRING}}}) or vector(0)",
                    "firing",
                )
            ],
            thresholds=[Step(None, "green"), Step(1, "red")],
            decimals=0,
        ),
        width=4,
        height=5,
    )
    board.add(
        stat_panel(
            "Dependencies up (1 = up)",
            "The readiness probe's view of each dependency, worst pod: database reachable, "
            "schema at the shipped migration, Redis reachable. 0 is the dependency at fault; "
            "the dependencies dashboard has its pool, latency and error panels.",
            "short",
            [Query(f"min by (dependency) ({sel.series(DEPENDENCY_UP)})", "{{dependency}}")],
            thresholds=[Step(None, "red"), Step(1, "green")],
            text_mode=BigValueTextMode.VALUE_AND_NAME,
            decimals=0,
        ),
        width=4,
        height=5,
    )
    board.add(
        timeseries_panel(
            "Requests by status class",
            "Requests per second grouped as the instrumentator exports them (2xx, 4xx, 5xx). 5xx "
            "is the service's fault and spends the availability budget; a rise in 4xx alone is "
            "usually a client release or an attack, not an outage.",
            "reqps",
            [Query(_requests_by("status"), "{{status}}")],
        ).override_by_name("5xx", [RED]),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Error ratio (5xx) by route",
            "Share of each route's requests answered 5xx. Anything above the availability "
            "budget (0.1% at a 99.9% objective) burns the SLO; one route alone points at its "
            "code path, every route at once at a shared dependency (database, pool).",
            "percentunit",
            [Query(_error_ratio_by("handler"), "{{handler}}")],
            maximum=1,
            thresholds=[Step(None, "green"), Step(0.001, "orange"), Step(0.01, "red")],
        ),
        width=8,
    )

    board.add(
        timeseries_panel(
            "Slowest routes: p95 (top 5)",
            "The five routes with the highest p95 right now, instead of a line per route. POST "
            "/auth/token is slow by design (Argon2); a GET route above 250 ms is not: check the "
            "cache hit ratio and pool waits on the dependencies dashboard.",
            "s",
            [Query(f"topk(5, {_quantile(0.95, 'handler, le')})", "{{handler}}")],
            thresholds=[Step(None, "green"), Step(0.25, "red")],
        ),
        width=8,
    )
    board.add(
        stat_panel(
            "DB pool in use (worst pod)",
            "Connections checked out over the pool maximum, on the busiest pod. Near 100% "
            "requests queue for connections: waits, then timeouts and 503s follow.",
            "percentunit",
            [
                Query(
                    f"max({sel.sum_by('pod', POOL_CHECKED_OUT)} / {sel.sum_by('pod', POOL_MAX)})",
                    "in use",
                )
            ],
            thresholds=[Step(None, "green"), Step(0.8, "orange"), Step(0.95, "red")],
            decimals=0,
        ),
        width=6,
        height=5,
    )
    board.add(
        stat_panel(
            "Redis breaker open (workers)",
            "Workers whose Redis circuit breaker is open now: they skip Redis (no cache, rate "
            "limits per RATE_LIMIT_FAIL_OPEN) until the cooldown passes. Above 0 Redis is at "
            "fault; see the runbook's Redis section.",
            "short",
            [Query(f"sum({sel.series(BREAKER)})", "open")],
            thresholds=[Step(None, "green"), Step(1, "red")],
            decimals=0,
        ),
        width=6,
        height=5,
    )
    board.add(
        stat_panel(
            "Database errors",
            "Database errors per second by kind (unavailable, timeout, ...). Anything above "
            "0 with 5xx rising means the database, not the code, is at fault.",
            "ops",
            [Query(f"sum by (kind) ({sel.rate(DB_ERRORS)}) or vector(0)", "{{kind}}")],
            thresholds=[Step(None, "green"), Step(0.01, "red")],
            text_mode=BigValueTextMode.VALUE_AND_NAME,
            decimals=2,
        ),
        width=6,
        height=5,
    )
    board.add(
        stat_panel(
            "Pods up",
            "Scrape targets answering, against targets known. Fewer up than known means pods "
            "crash-looping or unreachable; check restarts and OOM kills in the Pods row.",
            "short",
            [
                Query(f"sum(up{{{sel.TARGETS}}})", "up"),
                Query(f"count(up{{{sel.TARGETS}}})", "known"),
            ],
            text_mode=BigValueTextMode.VALUE_AND_NAME,
            decimals=0,
        ),
        width=6,
        height=5,
    )


def _traffic(board: Board) -> None:
    board.row("Traffic")
    board.add(
        timeseries_panel(
            "Request rate by route",
            "Requests per second per route template (probes and /metrics excluded). A sudden drop "
            "with no deploy means clients cannot reach the pods (ingress, DNS, NetworkPolicy); a "
            "spike on /auth/token is often a credential-stuffing attempt (see rate-limit panels).",
            "reqps",
            [Query(_requests_by("handler"), "{{handler}}")],
        ),
        width=8,
    )


def _latency(board: Board) -> None:
    board.row("Latency")
    board.add(
        timeseries_panel(
            "Latency p50 / p95 / p99 (all routes)",
            "Server-side request duration quantiles, interpolated within histogram buckets. p99 "
            "above 250 ms spends the latency budget; p50 rising with p99 means everything is "
            "slow (database, CPU), p99 alone means queueing (pool waits, hashing).",
            "s",
            [
                Query(_quantile(0.5, "le"), "p50"),
                Query(_quantile(0.95, "le"), "p95"),
                Query(_quantile(0.99, "le"), "p99"),
            ],
            thresholds=[Step(None, "green"), Step(0.25, "red")],
        ),
        width=8,
    )
    board.add(
        heatmap_panel(
            "Latency heatmap (selected routes)",
            "Requests per latency bucket over time; narrow it with the Route picker. A second "
            "band appearing above the main one is a slow path (cache misses, pool waits); the "
            "whole band moving up is a slower database or CPU saturation.",
            "s",
            Query(f"sum by (le) ({sel.rate(DURATION_BUCKET, sel.HTTP)})", "{{le}}"),
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Event loop lag p99 by pod",
            "How late the workers' event loops ran work that was already due (a timer checked "
            "ten times a second): every request waits that long before its code runs. Lag "
            "rising with latency means the pod is short of CPU (see CPU against its limit) or "
            "code blocks the loop; latency rising while lag stays low points at a dependency.",
            "s",
            [Query(sel.quantile(0.99, LOOP_LAG_BUCKET, "pod, le"), "{{pod}}")],
            thresholds=[Step(None, "green"), Step(0.05, "orange"), Step(0.1, "red")],
        ),
        width=8,
    )


def _slo(board: Board) -> None:
    board.row("SLOs (30-day windows, from recording rules)")
    board.add(
        _objective_panel(
            "Availability objective",
            "Target share of requests not answered 5xx, from the chart's slo.availability."
            "objective. If this shows No data the rule file is not loaded and no SLO alert "
            "can fire.",
            AVAILABILITY,
        ),
        width=4,
        height=5,
    )
    board.add(
        _objective_panel(
            "Latency objective (< 250 ms)",
            "Target share of requests served within 250 ms, from slo.latency.objective. No data "
            "means the rule file is not loaded.",
            LATENCY,
        ),
        width=4,
        height=5,
    )
    board.add(
        _burn_by_window_panel(
            "Availability burn rate by window",
            "Burn rate over the windows the alerts use. Fast page: 1h and 5m both above 14.4; "
            "slow page: 6h and 30m above 6. Short windows spiking alone is a blip; long ones "
            "climbing is a real burn.",
            AVAILABILITY,
        ),
        width=12,
    )
    board.add(
        _burn_by_window_panel(
            "Latency burn rate by window",
            "Burn rate of the latency budget over the alerting windows (thresholds 14.4 and 6 as "
            "for availability). A steady climb after a deploy points at the new code path.",
            LATENCY,
        ),
        width=12,
    )


def _capacity(board: Board) -> None:
    board.row("Capacity and what is running")
    board.add(
        timeseries_panel(
            "In-flight requests by route",
            "Requests being served right now. It should stay near rate x latency; a steady "
            "climb means requests queue inside the pods (pool exhausted, hashing saturated) and "
            "latency is about to follow.",
            "short",
            [Query(f"sum by (handler) (http_requests_inprogress{{{sel.HTTP}}})", "{{handler}}")],
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Pods up and workers alive",
            "Scrape targets up (one per pod) and gunicorn workers alive across them. Targets "
            "below the replica count means pods are missing or failing scrapes; workers below "
            "pods x WEB_CONCURRENCY means workers are crashing (OOM, timeouts) and restarting.",
            "short",
            [
                Query(f"sum(up{{{sel.TARGETS}}})", "pods up"),
                Query(f"count(up{{{sel.TARGETS}}})", "pods scraped"),
                Query(f"sum({sel.series('user_service_worker_processes')})", "workers alive"),
            ],
        ),
        width=8,
    )
    board.add(
        stat_panel(
            "Running versions (pods per build)",
            "Pods per version and git commit. Two versions outside a rollout means a stuck "
            "rollout (often migrations pending: see the dependencies dashboard); correlate an "
            "error burst with a version change here.",
            "short",
            [
                Query(
                    f"count by (version, git_commit) ({sel.series(variables.BUILD_INFO)})",
                    "{{version}} ({{git_commit}})",
                )
            ],
            text_mode=BigValueTextMode.VALUE_AND_NAME,
            decimals=0,
        ),
        width=8,
    )


def build() -> dashboard.Dashboard:
    builder = new_dashboard(
        TITLE,
        UID,
        "RED metrics, SLOs and error budgets of user-service; start here when paged.",
        ["user-service", "slo"],
    ).with_variable(variables.handler())
    board = Board(builder)
    _first_screen(board)
    _traffic(board)
    _latency(board)
    _slo(board)
    pods.add_pod_panels(board)
    _capacity(board)
    return board.builder
