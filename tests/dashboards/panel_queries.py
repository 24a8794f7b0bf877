"""Reads the generated dashboard JSON: panels, their PromQL, and variable substitution.

Shared by the offline checks and the live Prometheus proof, so both look at exactly the
queries Grafana will run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "dashboards"
RULES = DASHBOARD_DIR / "alerts" / "user-service.rules.yaml"
RULE_TESTS = DASHBOARD_DIR / "alerts" / "user-service.rules.test.yaml"
RUNBOOK = DASHBOARD_DIR / "RUNBOOK.md"
METRICS_MODULE = REPO / "app" / "observability" / "metrics.py"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # dashboard uid
    panel: str  # panel title
    ref_id: str
    expr: str


def dashboards() -> dict[str, dict[str, Any]]:
    """uid -> dashboard model, for every generated dashboards/*.json."""
    models = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        models[model["uid"]] = model
    return models


def panels(model: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every non-row panel, including panels nested in collapsed rows."""
    for panel in model.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries() -> list[PanelQuery]:
    found = []
    for uid, model in dashboards().items():
        for panel in panels(model):
            for target in panel.get("targets", []):
                found.append(PanelQuery(uid, panel["title"], target["refId"], target["expr"]))
    return found


def substitute(expr: str, values: Mapping[str, str], rate_interval: str) -> str:
    """Replace $__rate_interval and $var / ${var} the way Grafana does for regex matchers."""
    expr = expr.replace("$__rate_interval", rate_interval)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"dashboard variable ${name} has no test value")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana formats it for a Prometheus regex matcher: regex
    metacharacters escaped with a doubled backslash, since PromQL strings unescape once."""
    escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one real number in a query's result: NaN-only results draw nothing in Grafana
    ("No data")."""
    points = [s["value"] for s in result if "value" in s]
    points += [p for s in result for p in s.get("values", [])]
    return any(not math.isnan(float(value)) for _, value in points)
