"""Smoke run of the release gate against the real service on the local PostgreSQL and Redis.

A few seconds and a few users: the point is the exit code logic end to end (Locust, the
/metrics scrapes, the thresholds), both ways, not the numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.seed import create_admin
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


def _gate(service: RunningService, thresholds: str, out: Path) -> subprocess.CompletedProcess[str]:
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
            "4",
            "--spawn-rate",
            "4",
            "--duration",
            "4s",
            "--seed-users",
            "20",
            "--wait-min",
            "0.01",
            "--wait-max",
            "0.05",
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
    assert "| throughput | >= 1e+06 req/s |" in result.stdout.replace("1000000.0", "1e+06")


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
