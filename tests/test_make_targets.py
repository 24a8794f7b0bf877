"""The Makefile's Python targets install what they run: `make loadtest` right after `make run`
(which installs only the dev extra) must not fail with "No module named locust"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _recipe(target: str) -> str:
    result = subprocess.run(
        ["make", "-n", target, "HOST=http://127.0.0.1:1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def test_python_targets_go_through_the_installing_wrapper() -> None:
    for target, module in (
        ("loadtest", "loadtests.gate"),
        ("sweep", "loadtests.sweep"),
        ("dashboards", "dashboards.build"),
    ):
        recipe = _recipe(target)
        line = next(line for line in recipe.splitlines() if module in line)
        assert line.startswith("bash scripts/venv-run.sh "), (target, line)
        # The dev lock holds every extra: Locust, matplotlib, the Grafana SDK.
        assert line.split()[2] == "dev", (target, line)
        assert ". .venv/bin/activate" not in line, (target, line)


def test_wrapper_installs_the_extras_then_runs_in_the_venv() -> None:
    """Run the wrapper for real against this checkout's .venv: it (re)installs the dev lock
    when its stamp is missing, then the command finds Locust."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    result = subprocess.run(
        [
            "bash",
            "scripts/venv-run.sh",
            "dev",
            "python",
            "-c",
            "import locust, matplotlib, sys; print(sys.prefix)",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(".venv"), result.stdout
