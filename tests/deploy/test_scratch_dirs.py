"""What the chart's tools and the rendered-container launcher create in the temporary
directory goes when they are done: a CI run used to leave one helm home and two containers'
scratch directories (HOME and emptyDir stand-ins) behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.rendered import ContainerSpec, LocalLauncher, run_to_completion, started

REPO = Path(__file__).resolve().parents[2]
METRICS = "/run/prometheus"


def _spec(*argv: str) -> ContainerSpec:
    return ContainerSpec(
        name="scratch-test",
        image="user-service:test",
        argv=list(argv),
        env={"PROMETHEUS_MULTIPROC_DIR": METRICS},
        ports={},
        probes={},
        empty_dirs={METRICS: "prometheus-multiproc"},
        pre_stop_seconds=0,
        termination_grace_seconds=1,
        run_as_user=None,
        read_only_root=True,
    )


def _scratch(overrides: dict[str, str]) -> Path:
    """The process's scratch directory: the parent of its emptyDir stand-in."""
    stand_in = Path(overrides["PROMETHEUS_MULTIPROC_DIR"].split(" (stands for")[0])
    return stand_in.parent


def test_a_started_container_leaves_no_scratch_behind(tmp_path: Path) -> None:
    with started(LocalLauncher(log_dir=tmp_path), _spec("sleep", "30"), {}) as process:
        scratch = _scratch(process.overrides)
        assert (scratch / "prometheus-multiproc").is_dir()
        assert process.poll() is None
    assert not scratch.exists()


def test_a_finished_job_leaves_no_scratch_behind(tmp_path: Path) -> None:
    code, process = run_to_completion(LocalLauncher(log_dir=tmp_path), _spec("true"), {}, 30)
    assert code == 0
    assert not _scratch(process.overrides).exists()


def test_the_helm_home_goes_with_the_process() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "from scripts.chart.helm import _helm_home; print(_helm_home())"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert shown.startswith("/"), shown
    assert not Path(shown).exists()
