"""The scrape configuration the cluster tests derive from the chart's ServiceMonitor: it keeps
exactly the chart's Service and metrics port, ends with the chart's relabelings (job last but
the user's own), and refuses a monitor field it would not translate."""

from __future__ import annotations

import copy
import re

import pytest

from tests.cluster.scrape import scrape_configs

from .chart import NAMESPACE, Helm, find, one, value_files


def test_scrape_config_keeps_the_chart_service_and_port(helm: Helm) -> None:
    objects = helm.template(value_files("everything"))
    monitor = one(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [
        s for s in find(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    (config,) = scrape_configs(monitor, "/kubeconfig")
    keeps = [r for r in config["relabel_configs"] if r.get("action") == "keep"]
    labels = {
        r["source_labels"][0].removeprefix("__meta_kubernetes_service_label_"): r["regex"]
        for r in keeps
        if r["source_labels"][0].startswith("__meta_kubernetes_service_label_")
    }
    service_labels = {
        re.sub(r"[^a-zA-Z0-9_]", "_", key): value
        for key, value in service["metadata"]["labels"].items()
    }
    for label, regex in labels.items():
        assert re.fullmatch(regex, f"{service_labels[label]};true"), (label, regex)
    (port_keep,) = [r for r in keeps if "port_name" in r["source_labels"][0]]
    assert [p for p in service["spec"]["ports"] if re.fullmatch(port_keep["regex"], p["name"])]
    relabels = config["relabel_configs"]
    # The chart's job relabeling, then the user's own (everything.yaml adds one).
    assert relabels[-2] == {
        "action": "replace",
        "target_label": "job",
        "replacement": "user-service",
    }
    assert relabels[-1] == {
        "source_labels": ["__meta_kubernetes_pod_node_name"],
        "target_label": "node",
    }
    assert config["kubernetes_sd_configs"][0]["namespaces"] == {"names": [NAMESPACE]}


def test_untranslated_monitor_field_is_refused(helm: Helm) -> None:
    monitor = one(helm.template(value_files("everything")), "ServiceMonitor")
    changed = copy.deepcopy(monitor)
    changed["spec"]["endpoints"][0]["targetPort"] = 9464
    with pytest.raises(ValueError, match="targetPort"):
        scrape_configs(changed, "/kubeconfig")
