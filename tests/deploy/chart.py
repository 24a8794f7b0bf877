"""The deploy tests' view of the chart: the value sets they render and helpers to pick objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.chart.helm import (
    CHART_DIR,
    HIGHEST_KUBE,
    INSTALL_SCRIPT,
    LOWEST_KUBE,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    SUPPORTED_KUBE,
    Helm,
    HelmError,
    find_helm,
    parse_objects,
)

__all__ = [
    "CHART_DIR",
    "HIGHEST_KUBE",
    "INSTALL_SCRIPT",
    "LOWEST_KUBE",
    "NAMESPACE",
    "RELEASE",
    "REPO_ROOT",
    "SUPPORTED_KUBE",
    "Helm",
    "HelmError",
    "find_helm",
    "parse_objects",
]

VALUES_DIR = Path(__file__).resolve().parent / "values"

# The value sets every render test covers; each is a list of files under values/, applied
# in order. "defaults" is the chart's values.yaml plus only what an install must supply.
VALUE_SETS: dict[str, list[str]] = {
    "defaults": ["required.yaml"],
    "everything": ["required.yaml", "everything.yaml"],
    "existing-secret": ["existing-secret.yaml"],
    "gitops": ["required.yaml", "gitops.yaml"],
    "no-autoscaling": ["required.yaml", "no-autoscaling.yaml"],
}


def value_files(name: str) -> list[Path]:
    return [VALUES_DIR / f for f in VALUE_SETS[name]]


def find(
    objects: list[dict[str, Any]], kind: str, component: str | None = None
) -> list[dict[str, Any]]:
    """Objects of a kind, optionally only those of one app.kubernetes.io/component."""
    found = []
    for obj in objects:
        if obj.get("kind") != kind:
            continue
        labels = obj.get("metadata", {}).get("labels", {}) or {}
        if component is not None and labels.get("app.kubernetes.io/component") != component:
            continue
        found.append(obj)
    return found


def one(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, component)
    assert len(found) == 1, f"expected one {kind} (component={component}), got {len(found)}"
    return found[0]


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj.get("metadata", {}).get("annotations") or {})
