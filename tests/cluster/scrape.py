"""Prometheus scrape configuration generated from a rendered ServiceMonitor, the way the
Prometheus Operator generates it: Kubernetes discovery of EndpointSlices in the monitor's
namespaces, kept by the Service's labels and the endpoint's port name, the operator's target
labels (namespace, service, pod, container, endpoint, job from the Service's name), then the
monitor's own relabelings.

Only the fields the chart renders are translated; anything else fails loudly, so a chart
change the translation does not understand cannot pass as a scrape that matches nothing.
"""

from __future__ import annotations

import re
from typing import Any

# Fields of a ServiceMonitor endpoint this translation knows (see scrape_configs()).
ENDPOINT_FIELDS = frozenset(
    {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings"}
)
SPEC_FIELDS = frozenset({"namespaceSelector", "selector", "endpoints"})
RELABEL_FIELDS = {
    "sourceLabels": "source_labels",
    "separator": "separator",
    "targetLabel": "target_label",
    "regex": "regex",
    "modulus": "modulus",
    "replacement": "replacement",
    "action": "action",
}


def _label_name(label: str) -> str:
    """A Kubernetes label as the discovery's meta label names it: [^a-zA-Z0-9_] -> _."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _relabeling(rule: dict[str, Any]) -> dict[str, Any]:
    unknown = set(rule) - set(RELABEL_FIELDS)
    if unknown:
        raise ValueError(f"relabeling fields not translated: {sorted(unknown)}")
    converted = {RELABEL_FIELDS[key]: value for key, value in rule.items()}
    if "action" in converted:
        converted["action"] = str(converted["action"]).lower()
    return converted


def _unknown(kind: str, found: dict[str, Any], known: frozenset[str]) -> None:
    extra = set(found) - known
    if extra:
        raise ValueError(f"ServiceMonitor {kind} fields not translated: {sorted(extra)}")


def scrape_configs(monitor: dict[str, Any], kubeconfig: str) -> list[dict[str, Any]]:
    """One scrape config per endpoint of `monitor`, discovering through `kubeconfig`."""
    if monitor.get("kind") != "ServiceMonitor":
        raise ValueError(f"not a ServiceMonitor: {monitor.get('kind')}")
    spec = monitor["spec"]
    _unknown("spec", spec, SPEC_FIELDS)
    namespace = monitor["metadata"]["namespace"]
    namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [namespace]
    selector = spec["selector"]
    _unknown("selector", selector, frozenset({"matchLabels"}))
    keep_service = [
        {
            "source_labels": [
                f"__meta_kubernetes_service_label_{_label_name(key)}",
                f"__meta_kubernetes_service_labelpresent_{_label_name(key)}",
            ],
            "regex": f"({re.escape(str(value))});true",
            "action": "keep",
        }
        for key, value in sorted(selector["matchLabels"].items())
    ]
    configs = []
    for index, endpoint in enumerate(spec["endpoints"]):
        _unknown("endpoint", endpoint, ENDPOINT_FIELDS)
        port = endpoint["port"]
        target = "__meta_kubernetes_endpointslice_address_target"
        relabel = [
            *keep_service,
            {
                "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                "regex": re.escape(port),
                "action": "keep",
            },
            *(
                {
                    "source_labels": [f"{target}_kind", f"{target}_name"],
                    "separator": ";",
                    "regex": f"{kind};(.*)",
                    "replacement": "${1}",
                    "target_label": label,
                }
                for kind, label in (("Node", "node"), ("Pod", "pod"))
            ),
            *(
                {"source_labels": [f"__meta_kubernetes_{source}"], "target_label": label}
                for source, label in (
                    ("namespace", "namespace"),
                    ("service_name", "service"),
                    ("pod_name", "pod"),
                    ("pod_container_name", "container"),
                    ("service_name", "job"),
                )
            ),
            {"replacement": port, "target_label": "endpoint"},
            *(_relabeling(rule) for rule in endpoint.get("relabelings", [])),
        ]
        config: dict[str, Any] = {
            "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{index}",
            "honor_labels": False,
            "kubernetes_sd_configs": [
                {
                    "role": "endpointslice",
                    "kubeconfig_file": kubeconfig,
                    "namespaces": {"names": namespaces},
                }
            ],
            "metrics_path": endpoint.get("path", "/metrics"),
            "relabel_configs": relabel,
        }
        if "interval" in endpoint:
            config["scrape_interval"] = endpoint["interval"]
        if "scrapeTimeout" in endpoint:
            config["scrape_timeout"] = endpoint["scrapeTimeout"]
        if endpoint.get("metricRelabelings"):
            config["metric_relabel_configs"] = [
                _relabeling(rule) for rule in endpoint["metricRelabelings"]
            ]
        configs.append(config)
    return configs
