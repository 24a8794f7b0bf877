"""What Grafana asks a Prometheus for the dashboards: the options of each variable, through
the same label_values() lookups dashboards/variables.py defines, and each panel's range query.

Shared by the proof against a local Prometheus and the one in the cluster, so both resolve
variables and judge panels the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.dashboards.panel_queries import PanelQuery, grafana_regex, has_data, substitute
from tests.dashboards.promserver import PrometheusServer

# Grafana derives $__rate_interval from the scrape interval; 15s keeps several samples in
# each window at the 1-2 s scrape intervals of the proofs.
RATE_INTERVAL = "15s"
BUILD_INFO = "user_service_build_info"


@dataclass(frozen=True)
class VariableOptions:
    """What each variable's picker lists, in the order the dashboards chain them."""

    jobs: list[str]
    namespaces: list[str]
    services: list[str]
    pods: list[str]
    handlers: list[str]

    def all_selected(self) -> dict[str, str]:
        """Each variable with every option selected, formatted as Grafana substitutes it."""
        return {
            "datasource": "prometheus",
            "job": grafana_regex(self.jobs),
            "namespace": grafana_regex(self.namespaces),
            "service": grafana_regex(self.services),
            "pod": grafana_regex(sorted(self.pods)),
            "handler": grafana_regex(sorted(self.handlers)),
        }


def variable_options(prometheus: PrometheusServer) -> VariableOptions:
    def label_values(label: str, match: str) -> list[str]:
        values: list[str] = prometheus.api(f"label/{label}/values", **{"match[]": match})
        return values

    jobs = label_values("job", BUILD_INFO)
    job = grafana_regex(jobs)
    namespaces = label_values("namespace", f'{BUILD_INFO}{{job=~"{job}"}}')
    scope = f'job=~"{job}", namespace=~"{grafana_regex(namespaces)}"'
    return VariableOptions(
        jobs=jobs,
        namespaces=namespaces,
        services=label_values("service", f"{BUILD_INFO}{{{scope}}}"),
        pods=label_values("pod", f"{BUILD_INFO}{{{scope}}}"),
        handlers=label_values("handler", f"http_requests_total{{{scope}}}"),
    )


def assert_panel_has_data(
    prometheus: PrometheusServer,
    query: PanelQuery,
    variables: dict[str, str],
    start: float,
    end: float,
    *,
    may_be_empty: bool = False,
) -> None:
    expr = substitute(query.expr, variables, RATE_INTERVAL)
    # A range query over the traffic, as Grafana draws the panel (raises on a query error).
    result = prometheus.query_range(expr, start, end, step="2s")
    assert may_be_empty or has_data(result), (
        f"{query.panel} ({query.ref_id}) shows no data:\n{expr}\n{result}"
    )
