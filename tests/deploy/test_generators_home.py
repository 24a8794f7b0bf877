"""What the product runs to regenerate its own files lives outside tests/: the Makefile,
the chart and the plain manifests never send a reader into the test suite."""

from __future__ import annotations

import re

from .chart import REPO_ROOT

# Files a user of the chart or the manifests reads or runs.
PRODUCT_FILES = [
    REPO_ROOT / "Makefile",
    REPO_ROOT / "helm" / "user-service" / "values.yaml",
    REPO_ROOT / "helm" / "user-service" / "README.md",
    REPO_ROOT / "k8s" / "README.md",
    REPO_ROOT / "k8s" / "values.yaml",
    REPO_ROOT / "k8s" / "base" / "user-service.yaml",
]
# A module run (`python -m tests.deploy.x`) or a script path (`tests/deploy/x.py`).
TEST_REFERENCE = re.compile(r"\btests\.(?:deploy|support)\.\w+|\btests/(?:deploy|support)/\w+\.py")


def test_product_files_do_not_run_test_modules() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): TEST_REFERENCE.findall(path.read_text())
        for path in PRODUCT_FILES
        if TEST_REFERENCE.search(path.read_text())
    }
    assert not offenders, f"product files that run test modules: {offenders}"


def test_chart_generators_import_nothing_from_tests() -> None:
    generators = sorted((REPO_ROOT / "scripts" / "chart").glob("*.py"))
    assert generators, "scripts/chart/ holds the chart's generators"
    for path in generators:
        assert not re.search(r"^\s*(from|import) tests\b", path.read_text(), re.M), path
