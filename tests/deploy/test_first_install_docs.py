"""The first install as the READMEs tell it: the chart README walks image, database, values,
`helm install --wait` and `helm test` in that order, and both READMEs set the same values,
every one of them a real value of the chart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_README = (REPO / "helm" / "user-service" / "README.md").read_text(encoding="utf-8")
TOP_README = (REPO / "README.md").read_text(encoding="utf-8")
VALUES = yaml.safe_load((REPO / "helm" / "user-service" / "values.yaml").read_text())
SET = re.compile(r"--set\s+([A-Za-z][\w.]*)=")


def _first_install() -> str:
    return CHART_README.split("## First install", 1)[1].split("\n## ", 1)[0]


def _has_value(path: str) -> bool:
    node: Any = VALUES
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_chart_readme_first_path_is_in_order() -> None:
    text = _first_install()
    steps = [
        "buildah push",
        "CREATE ROLE",
        "CREATE DATABASE",
        "Set the values",
        "--wait",
        "helm test",
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions), dict(zip(steps, positions, strict=True))


def test_both_readmes_set_the_same_real_values() -> None:
    install = _first_install().split("4. **Install and wait**", 1)[1].split("5. **", 1)[0]
    chart = SET.findall(install)
    bullet = TOP_README.split("- **Helm chart**", 1)[1].split("\n- **", 1)[0]
    top = SET.findall(" ".join(bullet.split()))
    assert chart and set(chart) == set(top), (chart, top)
    missing = [name for name in chart if not _has_value(name)]
    assert not missing, missing
    # Step 3 names exactly the values the command sets.
    step3 = _first_install().split("**Set the values**", 1)[1].split("4. **", 1)[0]
    assert set(re.findall(r"`([a-z][\w.]+)`", step3)) >= set(chart)
