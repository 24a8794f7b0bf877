"""The Pods row: CPU and memory against limits, restarts and OOM kills, HPA replicas.

These series come from the cluster (cAdvisor through the kubelet, kube-state-metrics), not
from the service, so they carry the job of their exporter: they are narrowed by namespace and
the service's own pods (or its HPA, named like the scrape job) instead of by `job`.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import timeseries

from dashboards.layout import Board
from dashboards.panels import Query, Step, timeseries_panel

# Metrics of the cluster's exporters that the dashboards read (tests exempt them from the
# service's own metric contract and label rules, and from the live check outside a cluster).
CLUSTER_METRICS: Final = frozenset(
    {
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_limits",
        "kube_pod_container_status_restarts_total",
        "kube_pod_container_status_last_terminated_reason",
        "kube_horizontalpodautoscaler_status_current_replicas",
        "kube_horizontalpodautoscaler_status_desired_replicas",
    }
)
PANELS: Final = (
    "Pod CPU against its limit",
    "Pod memory against its limit",
    "Container restarts and OOM kills",
    "HPA replicas: current vs desired",
)

_POD: Final = 'namespace=~"$namespace", pod=~"$pod"'
_CONTAINERS: Final = f'{_POD}, container!="", container!="POD"'
# The chart names the HPA like the Service its pods are scraped through.
_HPA: Final = 'namespace=~"$namespace", horizontalpodautoscaler=~"$service"'


def _against_limit(title: str, description: str, used: str, resource: str) -> timeseries.Panel:
    """What the pod's containers use (`used`, summed by pod) over their `resource` limit."""
    limit = f'sum by (pod) (kube_pod_container_resource_limits{{{_POD}, resource="{resource}"}})'
    return timeseries_panel(
        title,
        description,
        "percentunit",
        [Query(f"{used} / {limit}", "{{pod}}")],
        thresholds=[Step(None, "green"), Step(0.8, "orange"), Step(0.95, "red")],
    )


def add_pod_panels(board: Board) -> None:
    board.row("Pods (cluster metrics: cAdvisor, kube-state-metrics)")
    board.add(
        _against_limit(
            PANELS[0],
            "CPU used over the CPU limit, per pod. Near 100% the container is throttled: "
            "latency rises on every route at once and gunicorn workers may miss their timeout.",
            "sum by (pod) (rate(container_cpu_usage_seconds_total"
            f"{{{_CONTAINERS}}}[$__rate_interval]))",
            "cpu",
        ),
        width=6,
    )
    board.add(
        _against_limit(
            PANELS[1],
            "Working-set memory over the memory limit, per pod. At 100% the kernel OOM-kills "
            "the container (see the next panel); a steady climb between deploys is a leak.",
            f"sum by (pod) (container_memory_working_set_bytes{{{_CONTAINERS}}})",
            "memory",
        ),
        width=6,
    )
    board.add(
        timeseries_panel(
            PANELS[2],
            "Container restarts per pod over the rate window, and containers whose last "
            "termination was an OOM kill. Restarts without OOM point at liveness failures or "
            "crashes: check the pod's previous logs.",
            "short",
            [
                Query(
                    "sum by (pod) (increase(kube_pod_container_status_restarts_total"
                    f"{{{_POD}}}[$__rate_interval]))",
                    "{{pod}} restarts",
                ),
                Query(
                    "sum by (pod) (kube_pod_container_status_last_terminated_reason"
                    f'{{{_POD}, reason="OOMKilled"}})',
                    "{{pod}} OOM-killed",
                ),
            ],
            thresholds=[Step(None, "green"), Step(1, "red")],
        ),
        width=6,
    )
    board.add(
        timeseries_panel(
            PANELS[3],
            "Replicas the HPA runs against the ones it wants. Desired above current for long "
            "means pods cannot be scheduled or start; desired at maxReplicas means the "
            "autoscaler has no room left (raise it within the connection budget).",
            "short",
            [
                Query(
                    f"max(kube_horizontalpodautoscaler_status_current_replicas{{{_HPA}}})",
                    "current",
                ),
                Query(
                    f"max(kube_horizontalpodautoscaler_status_desired_replicas{{{_HPA}}})",
                    "desired",
                ),
            ],
        ),
        width=6,
    )
