"""Smoke run of the release gate against the real service on the local PostgreSQL and Redis.

A few seconds and a few users: the point is the exit code logic end to end (Locust, the
/metrics scrapes, the thresholds), both ways, not the numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadtests.seed import create_admin
from tests.support.chromium import OFFLINE_HEADLESS_FLAGS
from tests.support.database import drop_database, fresh_database
from tests.support.isolation import redis_url
from tests.support.service import RunningService, running_service

REPO = Path(__file__).resolve().parents[2]
DATABASE = "user_service_load_test"
ADMIN_EMAIL = "smoke-admin@example.com"
ADMIN_PASSWORD = "smoke-admin-password-1"

LOOSE = """
version = 1
[run]
min_requests = 10
[global]
max_error_ratio = 0.05
min_throughput_rps = 1
min_cache_hit_ratio = 0.0
max_pool_wait_p95_ms = 2000
max_pool_timeouts = 0
[groups.reads]
routes = ["GET /api/v1/users/{id}", "GET /api/v1/users/me"]
p95_ms = 10000
p99_ms = 10000
"""

TIGHT = """
version = 1
[global]
min_throughput_rps = 1000000
min_cache_hit_ratio = 1.0
[groups.reads]
routes = ["GET /api/v1/users/{id}", "GET /api/v1/users/me"]
p95_ms = 0.001
"""


@pytest.fixture(scope="module")
def service() -> Iterator[RunningService]:
    url = fresh_database(DATABASE)
    create_admin(ADMIN_EMAIL, ADMIN_PASSWORD, {"DATABASE_URL": url, "APP_ENV": "test"})
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url(5),
        # The shared PostgreSQL has max_connections=100: stay small.
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "2",
        # Every simulated user shares 127.0.0.1: lift the per-IP login limit for the run.
        "RATE_LIMIT_LOGIN": "100000/minute",
        "RATE_LIMIT_API": "1000000/minute",
        "CACHE_KEY_PREFIX": f"lt-smoke-{os.getpid()}",
    }
    with running_service(env, workers=2) as running:
        yield running
    drop_database(DATABASE)


def _gate(
    service: RunningService,
    thresholds: str,
    out: Path,
    *extra: str,
    users: int = 4,
    duration: str = "4s",
    wait: tuple[float, float] = (0.01, 0.05),
) -> subprocess.CompletedProcess[str]:
    path = out.with_suffix(".toml")
    path.write_text(thresholds)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.gate",
            "--host",
            service.base_url,
            "--metrics-port",
            str(service.metrics_port),
            "--users",
            str(users),
            "--spawn-rate",
            str(max(users, 4)),
            "--duration",
            duration,
            "--seed-users",
            "20",
            "--wait-min",
            str(wait[0]),
            "--wait-max",
            str(wait[1]),
            *extra,
            "--admin-email",
            ADMIN_EMAIL,
            "--thresholds",
            str(path),
            "--out",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, "LOADTEST_ADMIN_PASSWORD": ADMIN_PASSWORD},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_gate_passes_on_loose_thresholds(service: RunningService, tmp_path: Path) -> None:
    result = _gate(service, LOOSE, tmp_path / "loose")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "loose" / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["total"]["requests"] >= 10
    # The scrapes saw the run: the service's own counters moved.
    assert summary["service"]["cache"]["hit"] + summary["service"]["cache"]["miss"] > 0
    assert summary["service"]["missing"] == []
    assert (tmp_path / "loose" / "report.html").stat().st_size > 0
    assert (tmp_path / "loose" / "locust_stats.csv").exists()
    routes = (tmp_path / "loose" / "final_stats.csv").read_text()
    assert "/api/v1/users/{id}" in routes
    assert "GET,/api/v1/users," in routes  # the admin journey ran


def test_gate_fails_on_impossible_thresholds(service: RunningService, tmp_path: Path) -> None:
    result = _gate(service, TIGHT, tmp_path / "tight")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads((tmp_path / "tight" / "summary.json").read_text())
    failed = {c["name"] for c in summary["checks"] if not c["passed"]}
    assert {"throughput", "reads p95"} <= failed
    assert "FAIL" in result.stdout
    # The table reads plainly: the limit in words, the result, the margin with its side.
    assert "| throughput | at least 1000000.0 req/s |" in result.stdout
    assert "short of the limit" in result.stdout
    assert "| FAIL |" in result.stdout


def test_gate_refuses_a_broken_thresholds_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[global]\nmax_eror_ratio = 0.1\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.gate",
            "--host",
            "http://127.0.0.1:9",
            "--thresholds",
            str(bad),
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "max_eror_ratio" in result.stderr


# The shipped kind of throughput check (served / offered) next to the old fixed floor, at a
# realistic think time: the fixed floor fails a healthy service at a low user count.
SCALED = """
version = 1
[run]
min_requests = 20
[global]
max_error_ratio = 0.05
min_throughput_of_offered = 0.6
min_throughput_rps = 25
"""


ScaledGate = Callable[[int], tuple[subprocess.CompletedProcess[str], Path]]


@pytest.fixture(scope="module")
def scaled_gate(service: RunningService, tmp_path_factory: pytest.TempPathFactory) -> ScaledGate:
    """The gate under SCALED thresholds for a number of users, run once per number: the
    verdict tests and the report's screenshot read the same run."""
    runs: dict[int, tuple[subprocess.CompletedProcess[str], Path]] = {}

    def run(users: int) -> tuple[subprocess.CompletedProcess[str], Path]:
        if users not in runs:
            out = tmp_path_factory.mktemp("scaled") / f"users-{users}"
            result = _gate(service, SCALED, out, users=users, duration="8s", wait=(0.1, 0.5))
            runs[users] = (result, out)
        return runs[users]

    return run


@pytest.mark.parametrize("users", [3, 12])
def test_gate_judges_the_service_not_the_user_count(scaled_gate: ScaledGate, users: int) -> None:
    result, out = scaled_gate(users)
    summary = json.loads((out / "summary.json").read_text())
    checks = {c["name"]: c for c in summary["checks"]}
    scaled = checks["throughput / offered"]
    # 3 users offer 3 / 0.3 s = 10 req/s; 12 offer 40: the service keeps up with both.
    assert scaled["passed"], (scaled, result.stdout)
    assert f"{users} users" in scaled["note"]
    fixed = checks["throughput"]
    assert fixed["passed"] is (users == 12), (fixed, result.stdout)
    report = (out / "report.html").read_text()
    # One report: the verdict first, then the thresholds, then the charts.
    assert (
        report.index("Load-test gate: FAIL" if users == 3 else "Load-test gate: PASS")
        < (report.index("<h2>Thresholds</h2>"))
        < report.index("<h2>Charts</h2>")
        < report.index("data:image/png;base64,")
    )
    assert (out / "locust.html").exists()


def test_distributed_gate_totals_add_up(service: RunningService, tmp_path: Path) -> None:
    """One master and two worker processes: the verdict is the master's, and the master's
    total is exactly what the two workers sent."""
    counts = tmp_path / "counts"
    counts.mkdir()
    out = tmp_path / "distributed"
    result = _gate(
        service,
        LOOSE,
        out,
        "--processes",
        "2",
        "--worker-counts-dir",
        str(counts),
        users=6,
        duration="6s",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    per_worker = [json.loads(path.read_text())["requests"] for path in counts.glob("*.json")]
    assert len(per_worker) == 2, per_worker
    assert all(count > 0 for count in per_worker), per_worker
    assert sum(per_worker) == summary["total"]["requests"]
    assert "2 local worker processes" in summary["meta"]["load generator"]
    # The service saw every one of them (its own count, from /metrics).
    assert summary["service"]["server_requests"] >= summary["total"]["requests"]


def test_report_first_screen_is_the_verdict(scaled_gate: ScaledGate) -> None:
    """Render the report in headless Chromium at 1920x1080: the artefact a reviewer opens
    (build/loadtest-report/first-screen.png)."""
    chromium = shutil.which("chromium")
    assert chromium, "run scripts/install-docs-tools.sh (Debian chromium)"
    result, out = scaled_gate(12)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    artefacts = REPO / "build" / "loadtest-report"
    artefacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "report.html", artefacts / "report.html")
    png = artefacts / "first-screen.png"
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="us-chromium-") as profile:
        shot = subprocess.run(
            [
                chromium,
                *OFFLINE_HEADLESS_FLAGS,
                f"--user-data-dir={profile}",
                "--window-size=1920,1080",
                "--hide-scrollbars",
                f"--screenshot={png}",
                (artefacts / "report.html").as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert png.exists() and png.stat().st_size > 20_000, shot.stderr
