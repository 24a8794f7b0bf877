"""One measured run: seed, scrape /metrics, run Locust headless, scrape again, read the CSV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from loadtests import promscrape, seed
from loadtests.locust_csv import RunStats, read_stats
from loadtests.offered import parse_duration
from loadtests.service_metrics import ServiceMetrics, summarise

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
FINAL_STATS = "final_stats.csv"  # written by the locustfile once every user has stopped
# A service worker writes its samples for scrapes answered by the other workers once a
# second: a scrape taken this long after the last request counts every one of them.
SETTLE_SECONDS = 1.5


class Probe(Protocol):
    """Something measured over Locust's run only (not over seeding): started right after
    the first scrape, stopped right after Locust exits."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class RunError(RuntimeError):
    """The run itself broke (not a threshold): the gate exits 2, not 1."""


@dataclass(frozen=True)
class Scenario:
    users: int = 20
    spawn_rate: float = 10.0
    duration: str = "60s"
    seed_users: int = 200
    hot: int = 10
    wait_min: float = 0.1
    wait_max: float = 0.5
    hot_share: float = 0.8
    extra_env: dict[str, str] = field(default_factory=dict)
    # Locust's distributed mode. processes > 0: this Locust is a master with that many
    # worker processes forked on this machine. expect_workers > 0: a master that waits for
    # that many workers to connect from elsewhere (the chart's worker pods).
    processes: int = 0
    expect_workers: int = 0
    master_bind_port: int = 5557
    # Each worker process writes how many requests it sent here (tests add up the totals).
    worker_counts_dir: Path | None = None

    def distributed_args(self) -> list[str]:
        if self.expect_workers:
            return [
                "--master",
                "--expect-workers",
                str(self.expect_workers),
                "--expect-workers-max-wait",
                "300",
                "--master-bind-port",
                str(self.master_bind_port),
            ]
        if self.processes:
            return ["--processes", str(self.processes)]
        return []


@dataclass(frozen=True)
class RunResult:
    stats: RunStats
    metrics: ServiceMetrics | None
    out_dir: Path
    wall_seconds: float


def _seed_file(
    host: str,
    scenario: Scenario,
    out_dir: Path,
    admin_email: str | None,
    admin_password: str | None,
) -> Path:
    data = seed.seed(
        host,
        scenario.seed_users,
        # One token pair per simulated user, so no two users share a refresh-token family.
        logins=min(scenario.users, scenario.seed_users),
        hot=scenario.hot,
        admin_email=admin_email,
        admin_password=admin_password,
    )
    path = out_dir / "seed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _scrape(urls: list[str]) -> promscrape.Snapshot | None:
    try:
        return promscrape.scrape_all(urls)
    except (OSError, ValueError) as exc:
        print(f"warning: /metrics not scraped: {exc}", file=sys.stderr)
        return None


def run_locust(host: str, scenario: Scenario, out_dir: Path, seed_file: Path) -> None:
    env = {
        **os.environ,
        **scenario.extra_env,
        "LOADTEST_SEED_FILE": str(seed_file),
        "LOADTEST_WAIT_MIN": str(scenario.wait_min),
        "LOADTEST_WAIT_MAX": str(scenario.wait_max),
        "LOADTEST_HOT_SHARE": str(scenario.hot_share),
        "LOADTEST_FINAL_STATS": str(out_dir / FINAL_STATS),
    }
    if scenario.worker_counts_dir is not None:
        env["LOADTEST_WORKER_COUNTS_DIR"] = str(scenario.worker_counts_dir)
    distributed = scenario.distributed_args()
    if distributed:
        # The master ends the run itself, after the workers' last reports (see locustfile).
        env["LOADTEST_RUN_TIME"] = str(parse_duration(scenario.duration))
        run_time: list[str] = []
    else:
        run_time = ["--run-time", scenario.duration]
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--users",
        str(scenario.users),
        "--spawn-rate",
        str(scenario.spawn_rate),
        *run_time,
        "--csv",
        str(out_dir / "locust"),
        # Locust's own page; the gate writes report.html (verdict first) next to it.
        "--html",
        str(out_dir / "locust.html"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--logfile",
        str(out_dir / "locust.log"),
        # Requests in flight at the end finish (and count) instead of being cut off.
        "--stop-timeout",
        "10",
        # The gate, not Locust, decides what a failed request means for the verdict.
        "--exit-code-on-error",
        "0",
        *distributed,
    ]
    with (out_dir / "locust.out").open("wb") as log:
        result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise RunError(f"locust exited {result.returncode}; see {out_dir / 'locust.out'}")


def measure(
    host: str,
    scenario: Scenario,
    out_dir: Path,
    *,
    seed_file: Path | None = None,
    admin_email: str | None = None,
    admin_password: str | None = None,
    metrics_urls: list[str] | None = None,
    probes: Sequence[Probe] = (),
) -> RunResult:
    """`metrics_urls`: where to scrape /metrics (default: the host's metrics port). Behind a
    Service with several replicas, pass every pod, or the deltas mix pods."""
    targets = metrics_urls or [promscrape.metrics_base(host)]
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        seed.wait_ready(host, timeout=60)
        if seed_file is None:
            seed_file = _seed_file(host, scenario, out_dir, admin_email, admin_password)
    except seed.SeedError as exc:
        raise RunError(str(exc)) from exc
    # Seeding's misses and hashes happen before this scrape, so they are not in the deltas.
    time.sleep(SETTLE_SECONDS)
    before = _scrape(targets)
    started = time.monotonic()
    for probe in probes:
        probe.start()
    try:
        run_locust(host, scenario, out_dir, seed_file)
    finally:
        for probe in probes:
            probe.stop()
    wall = time.monotonic() - started
    time.sleep(SETTLE_SECONDS)
    after = _scrape(targets)
    stats_path = out_dir / FINAL_STATS
    if not stats_path.exists():  # an older locustfile: Locust's periodic CSV is close enough
        stats_path = out_dir / "locust_stats.csv"
    if not stats_path.exists():
        raise RunError(f"Locust wrote no {stats_path.name}; see {out_dir / 'locust.out'}")
    metrics = summarise(before, after) if before and after else None
    return RunResult(read_stats(stats_path), metrics, out_dir, wall)
