"""The chart documents every value, and its README's values table is the generated one."""

from __future__ import annotations

from scripts.chart import readme as chart_readme


def test_every_value_is_documented() -> None:
    missing = chart_readme.undocumented(chart_readme.VALUES.read_text())
    assert not missing, f"values.yaml keys without a `# --` comment: {missing}"


def test_readme_values_table_is_current() -> None:
    assert chart_readme.README.read_text() == chart_readme.rendered_readme(), (
        "helm/user-service/README.md is stale: python -m scripts.chart.readme --write"
    )


def test_undocumented_value_is_found() -> None:
    text = "a:\n  # -- documented\n  b: 1\n  c: 2\nlist:\n  - x: 1\n# -- whole map\nd:\n  e: 1\n"
    assert chart_readme.undocumented(text) == ["a.c", "list"]
