"""A hang fails the run with the stacks of its threads instead of running CI into its limit:
even one in a session fixture's teardown, after the last test has passed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_TESTS = """
import time

import pytest


@pytest.fixture(scope="session")
def stuck_at_the_end():
    yield
    time.sleep(120)  # teardown_that_never_ends


def test_passes(stuck_at_the_end):
    assert True
"""


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(_TESTS, encoding="utf-8")
    return subprocess.run(
        # The project's own configuration, on a sample outside the project's tests.
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO / "pyproject.toml"),
            "-p",
            "no:cacheprovider",
            *args,
            str(tmp_path),
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")},
        capture_output=True,
        text=True,
        timeout=100,
    )


def test_the_suite_runs_with_a_limit_per_test(tmp_path: Path) -> None:
    header = _pytest(tmp_path, "--collect-only")
    assert "timeout: 1800.0s" in header.stdout, header.stdout


def test_a_teardown_that_hangs_fails_with_its_stack(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _pytest(tmp_path, "-o", "timeout=3")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout
    assert elapsed < 60
    assert "1 passed, 1 error" in result.stdout, result.stdout
    assert "Timeout" in result.stdout and "teardown_that_never_ends" in result.stdout
