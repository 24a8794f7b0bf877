"""Dashboard variables: datasource, job, namespace, service, pod (and route for HTTP panels).

Options come from `user_service_build_info`, which every pod exports from start-up, so the
pickers are filled before the first request arrives.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from dashboards.panels import DATASOURCE

BUILD_INFO = "user_service_build_info"


def datasource() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def _query(
    name: str, label: str, query: str, *, all_value: str | None = ".*"
) -> dashboard.QueryVariable:
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        # Re-list on time-range change: pods come and go with every rollout.
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .multi(True)
    )
    # ".*" rather than Grafana's "(a|b|c)" expansion: selecting All also follows pods that
    # appear after the dashboard loaded.
    return variable.all_value(all_value) if all_value is not None else variable


def job() -> dashboard.QueryVariable:
    # No ".*" here: job is the only matcher that keeps other services' `up` and `http_*`
    # series out, so All must expand to the jobs that export user_service_build_info.
    return _query("job", "Job", f"label_values({BUILD_INFO}, job)", all_value=None)


def namespace() -> dashboard.QueryVariable:
    return _query(
        "namespace",
        "Namespace",
        f'label_values({BUILD_INFO}{{job=~"$job"}}, namespace)',
    )


def service() -> dashboard.QueryVariable:
    # The Service the scrape found the pods through (the Prometheus Operator's `service`
    # target label). The chart names its HPA like its Service, while `job` is relabelled to
    # one name for every release: this is how panels find the release's HPA.
    return _query(
        "service",
        "Service",
        f'label_values({BUILD_INFO}{{job=~"$job", namespace=~"$namespace"}}, service)',
    )


def pod() -> dashboard.QueryVariable:
    return _query(
        "pod",
        "Pod",
        f'label_values({BUILD_INFO}{{job=~"$job", namespace=~"$namespace"}}, pod)',
    )


def handler() -> dashboard.QueryVariable:
    return _query(
        "handler",
        "Route",
        'label_values(http_requests_total{job=~"$job", namespace=~"$namespace"}, handler)',
    )
