"""The alert and recording rules: promtool accepts and unit-tests them, every alert is
documented, and every series a rule or panel names is one the service exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.dashboards.exported_metrics import PLATFORM_SERIES, http_series, service_series
from tests.dashboards.panel_queries import RULE_TESTS, RULES, RUNBOOK, queries

OBJECTIVES = {
    "user_service:slo_availability_objective": "vector(0.999)",
    "user_service:slo_latency_objective": "vector(0.99)",
}
SEVERITIES = {"critical", "warning", "info"}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _records() -> set[str]:
    return {r["record"] for r in _rules() if "record" in r}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool missing: run scripts/install-promtool.sh")
    return path


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fires: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - silent == set(), "alerts never shown to stay silent"


def test_objective_records_are_what_the_chart_replaces() -> None:
    rules = {r["record"]: r["expr"] for r in _rules() if "record" in r}
    for record, expr in OBJECTIVES.items():
        assert rules[record].strip() == expr
    for alert in _alerts():
        if alert["labels"].get("slo"):
            # Objectives reach the alerts only through the records, never as literals.
            assert "scalar(max(user_service:slo_" in alert["expr"], alert["alert"]


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_every_alert_is_documented_with_a_runbook_section() -> None:
    anchors = {
        _anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for alert in _alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], name
        url = annotations["runbook_url"]
        assert "/dashboards/RUNBOOK.md#" in url, name
        assert url.split("#", 1)[1] in anchors, f"{name}: no RUNBOOK.md section for {url}"


def _series_names(expr: str) -> set[str]:
    # Grouping clauses hold label names, not series: drop them first.
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    # Identifiers followed by a selector, a range or used bare inside an aggregation.
    tokens = set(re.findall(r"(?<![\w:\"$])([a-zA-Z_][a-zA-Z0-9_:]*)(?=\s*[\{\[)])", expr))
    functions_and_keywords = {
        "rate",
        "increase",
        "sum",
        "max",
        "min",
        "count",
        "avg",
        "by",
        "scalar",
        "vector",
        "absent",
        "histogram_quantile",
        "sum_over_time",
        "or",
        "and",
        "on",
        "le",
    }
    return {t for t in tokens if t not in functions_and_keywords and not t.isdigit()}


def test_every_series_named_is_exported_or_recorded() -> None:
    known = service_series() | http_series() | PLATFORM_SERIES | _records()
    exprs = [r["expr"] for r in _rules()] + [q.expr for q in queries()]
    unknown = {name for expr in exprs for name in _series_names(expr)} - known
    assert unknown == set(), f"not exported by the service: {sorted(unknown)}"
