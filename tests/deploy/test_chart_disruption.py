"""The PodDisruptionBudget against every pod count the Deployment can run, including the one
right after install: with autoscaling on, the Deployment has no replicas field, so the API
server's default of one pod runs until the HPA's first sync. A drain then must not evict it.

The budget is judged the way the disruption controller computes `disruptionsAllowed`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from .chart import Helm, HelmError, one, value_files

# What the API server gives a Deployment without a replicas field.
API_DEFAULT_REPLICAS = 1


def _count(value: int | str, expected: int) -> int:
    """An int-or-percent budget field as the controller counts it (percentages round up)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * expected / 100)
    return int(value)


def disruptions_allowed(pdb: dict[str, Any], pods: int) -> int:
    """Evictions the budget allows with `pods` healthy pods of a Deployment scaled to `pods`."""
    spec = pdb["spec"]
    if "maxUnavailable" in spec:
        desired_healthy = max(0, pods - _count(spec["maxUnavailable"], pods))
    else:
        desired_healthy = _count(spec["minAvailable"], pods)
    return max(0, pods - desired_healthy)


def pod_counts(objects: list[dict[str, Any]]) -> range:
    """From the first pod after install up to the autoscaler's maximum."""
    deployment = one(objects, "Deployment")
    hpa = one(objects, "HorizontalPodAutoscaler")
    first = deployment["spec"].get("replicas", API_DEFAULT_REPLICAS)
    return range(min(first, hpa["spec"]["minReplicas"]), hpa["spec"]["maxReplicas"] + 1)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"podDisruptionBudget.maxUnavailable": "50%"},
        {
            "autoscaling.minReplicas": "3",
            "autoscaling.maxReplicas": "4",
            "config.DB_POOL_SIZE": "3",
        },
        {"podDisruptionBudget.maxUnavailable": "2", "autoscaling.maxReplicas": "3"},
    ],
    ids=["defaults", "percent", "min-3", "max-unavailable-2"],
)
def test_budget_never_lets_a_drain_take_the_last_pod(helm: Helm, values: dict[str, str]) -> None:
    objects = helm.template(value_files("defaults"), values)
    pdb = one(objects, "PodDisruptionBudget")
    for pods in pod_counts(objects):
        allowed = disruptions_allowed(pdb, pods)
        assert allowed < pods, f"{pods} pod(s): the budget {pdb['spec']} lets all {allowed} go"


def test_budget_still_lets_a_drain_proceed_at_the_autoscaler_floor(helm: Helm) -> None:
    """Protecting the lone pod must not block drains: at minReplicas, maxUnavailable may go."""
    objects = helm.template(value_files("defaults"), {})
    pdb = one(objects, "PodDisruptionBudget")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert disruptions_allowed(pdb, hpa["spec"]["minReplicas"]) == 1


def test_explicit_min_available_wins(helm: Helm) -> None:
    objects = helm.template(value_files("defaults"), {"podDisruptionBudget.minAvailable": "2"})
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_unusable_max_unavailable_is_refused_naming_it(helm: Helm) -> None:
    with pytest.raises(HelmError) as refused:
        helm.template(value_files("defaults"), {"podDisruptionBudget.maxUnavailable": "half"})
    assert "podDisruptionBudget.maxUnavailable" in str(refused.value)
