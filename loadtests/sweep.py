"""The tuning sweep: run the same scenario over a small grid of settings and recommend values.

    python -m loadtests.sweep --grid loadtests/sweep.toml --out build/sweep \\
        --max-connections 100 --replicas 3

For each point it starts the service itself (gunicorn on 127.0.0.1, the local PostgreSQL in
one fresh database, Redis on its own DB number with a fresh key prefix per point so every
point starts cold), seeds it through the API, runs Locust, and stops it by pid. The report
(report.md, results.csv, plot_*.png, recommended-values.yaml) lands in --out.
`--from-results results.csv` re-renders the report without running anything.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from loadtests import cpu, local_service, seed
from loadtests.grid import Grid, Knobs, Point, load_grid
from loadtests.locust_csv import RunStats
from loadtests.recommend import Criteria, Recommendation, recommend
from loadtests.runner import RunError, RunResult, measure
from loadtests.sweep_report import plot_axis, render_report, values_snippet
from loadtests.sweep_results import PointResult, read_results, write_results

DATABASE = "user_service_load_sweep"
ADMIN = "loadtest-admin@example.com"


class ConnectionSampler(threading.Thread):
    """Polls pg_stat_activity once a second: the connections the pool really opened."""

    def __init__(self, database: str) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(1.0):
            try:
                self.peak = max(self.peak, local_service.count_connections(self.database))
            except OSError:
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


class CpuProbe:
    """CPU the service's processes and the database's backends spent during the run."""

    def __init__(self, root_pid: int, database: str) -> None:
        self.root_pid, self.database = root_pid, database
        self.service_seconds = self.database_seconds = 0.0
        self._before: cpu.CpuSample | None = None

    def start(self) -> None:
        self._before = cpu.sample(self.root_pid, self.database)

    def stop(self) -> None:
        if self._before is not None:
            after = cpu.sample(self.root_pid, self.database)
            self.service_seconds, self.database_seconds = cpu.spent(self._before, after)


def _row(
    point: Point,
    status: str,
    result: RunResult | None = None,
    peak: int = 0,
    probe: CpuProbe | None = None,
) -> PointResult:
    k = point.knobs
    base = PointResult(
        point=point.name,
        axes=" ".join(point.axes),
        workers=k.workers,
        pool_size=k.pool_size,
        max_overflow=k.max_overflow,
        cache_ttl=k.cache_ttl,
        pool_timeout=k.pool_timeout,
        status=status,
    )
    if result is None:
        return base
    stats, m = result.stats, result.metrics
    reads = [
        r
        for key in ("GET /api/v1/users/{id}", "GET /api/v1/users/me")
        if (r := stats.route(key)) is not None
    ]
    return replace(
        base,
        requests=stats.total.requests,
        failures=stats.total.failures,
        rps=round(stats.total.rps, 2),
        p50_ms=stats.total.median_ms,
        p95_ms=stats.total.p95_ms,
        p99_ms=stats.total.p99_ms,
        reads_p95_ms=max((r.p95_ms for r in reads), default=0.0),
        cache_hit_ratio=round((m.cache_hit_ratio or 0.0) if m else 0.0, 4),
        pool_wait_p95_ms=round((m.pool_wait_p95_ms or 0.0) if m else 0.0, 3),
        pool_wait_mean_ms=round((m.pool_wait_mean_ms or 0.0) if m else 0.0, 3),
        pool_checkouts=m.pool_checkouts if m else 0.0,
        pool_timeouts=m.pool_timeouts if m else 0.0,
        db_connections_peak=peak,
        load_average=round(os.getloadavg()[0], 2),
        service_cpu_ms_per_request=_per_request(probe.service_seconds if probe else 0.0, stats),
        db_cpu_ms_per_request=_per_request(probe.database_seconds if probe else 0.0, stats),
        cores=os.cpu_count() or 0,
    )


def _per_request(seconds: float, stats: RunStats) -> float:
    return round(1000 * seconds / stats.total.requests, 3) if stats.total.requests else 0.0


def run_point(
    point: Point,
    grid: Grid,
    args: argparse.Namespace,
    database_url: str,
    admin_password: str,
    run_id: str,
) -> PointResult:
    knobs = point.knobs
    if knobs.connections_per_replica > args.local_connection_cap:
        # The local PostgreSQL is shared: never open more than the cap, whatever the grid says.
        return _row(
            point,
            f"skipped: {knobs.connections_per_replica} connections > local cap "
            f"{args.local_connection_cap}",
        )
    env = {
        **knobs.env(),
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis_url,
        "CACHE_KEY_PREFIX": f"lt:{run_id}:{point.name}",
        **({} if args.full_argon2 else local_service.CHEAP_ARGON2_ENV),
    }
    out = args.out / point.name
    print(
        f"[{time.strftime('%H:%M:%S')}] {point.name} workers={knobs.workers} "
        f"pool={knobs.pool} cache={knobs.cache_label}",
        flush=True,
    )
    try:
        with local_service.running(env, out) as service:
            sampler = ConnectionSampler(args.database)
            probe = CpuProbe(service.process.pid, args.database)
            result = measure(
                service.base_url,
                grid.scenario,
                out,
                admin_email=ADMIN,
                admin_password=admin_password,
                probes=(sampler, probe),
                metrics_urls=[service.metrics_base_url],
            )
    except (RunError, seed.SeedError, OSError) as exc:
        return _row(point, f"error: {exc}")
    # Without the service's own numbers the point cannot be judged on the pool or the cache.
    status = "ok" if result.metrics is not None else "error: /metrics not scraped"
    row = _row(point, status, result, sampler.peak, probe)
    print(
        f"    {row.rps:.0f} req/s, p95 {row.p95_ms:.0f} ms, p99 {row.p99_ms:.0f} ms, "
        f"errors {row.error_ratio:.2%}, hit {row.cache_hit_ratio:.2f}, "
        f"pool wait p95 {row.pool_wait_p95_ms:.1f} ms, timeouts {row.pool_timeouts:.0f}, "
        f"db conns {row.db_connections_peak}, CPU/request service "
        f"{row.service_cpu_ms_per_request:.2f} ms + database {row.db_cpu_ms_per_request:.2f} ms, "
        f"load average {row.load_average}",
        flush=True,
    )
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.sweep", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--grid", type=Path, default=Path("loadtests/sweep.toml"))
    p.add_argument("--out", type=Path, default=Path("build/sweep"))
    p.add_argument(
        "--max-connections",
        type=int,
        default=100,
        help="PostgreSQL max_connections of the target database",
    )
    p.add_argument("--replicas", type=int, default=2, help="replicas the budget must allow")
    p.add_argument("--database", default=DATABASE)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    p.add_argument(
        "--local-connection-cap",
        type=int,
        default=40,
        help="never run a point that may open more connections than this here",
    )
    p.add_argument("--duration", help="override the grid's run time per point")
    p.add_argument("--users", type=int, help="override the grid's simulated users")
    p.add_argument(
        "--no-confirm",
        action="store_true",
        help="skip the confirmation run of an unmeasured recommended combination",
    )
    p.add_argument("--full-argon2", action="store_true")
    p.add_argument("--from-results", type=Path, help="re-render the report from a results.csv")
    return p.parse_args(argv)


def write_report(
    rows: list[PointResult], grid: Grid, args: argparse.Namespace, header: list[str]
) -> Recommendation:
    criteria = Criteria.from_mapping(grid.criteria)
    measured = [r for r in rows if r.point != "confirm"]
    rec = recommend(measured, grid.baseline, criteria, args.replicas, args.max_connections)
    plots = [
        p
        for axis in grid.axes
        if (p := plot_axis(rows, axis, args.out / f"plot_{axis}.png", rec, criteria)) is not None
    ]
    confirm = next((r for r in rows if r.point == "confirm"), None)
    if confirm is not None:
        header = [
            *header,
            f"confirmation run of the recommendation: {confirm.rps:.0f} req/s, "
            f"p95 {confirm.p95_ms:.0f} ms, errors {confirm.error_ratio:.2%} "
            f"({confirm.status})",
        ]
    text = render_report(rows, grid.baseline, criteria, rec, plots, header)
    (args.out / "report.md").write_text(text, encoding="utf-8")
    (args.out / "recommended-values.yaml").write_text(values_snippet(rec), encoding="utf-8")
    return rec


def _measured_knobs(rows: list[PointResult]) -> set[Knobs]:
    return {r.knobs for r in rows if r.measured}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local_service.install_stop_handlers()
    grid = load_grid(args.grid)
    if args.duration or args.users:
        scenario = grid.scenario
        scenario = replace(
            scenario,
            duration=args.duration or scenario.duration,
            users=args.users or scenario.users,
            spawn_rate=max(scenario.spawn_rate, float(args.users or 0)),
        )
        grid = replace(grid, scenario=scenario)
    args.out.mkdir(parents=True, exist_ok=True)
    s = grid.scenario
    header = [
        f"scenario: {s.users} users, {s.duration} per point, think time {s.wait_min}-"
        f"{s.wait_max}s, {s.seed_users} seeded accounts, hot set {s.hot} "
        f"({s.hot_share:.0%} of reads)",
        f"budget: --replicas {args.replicas}, --max-connections {args.max_connections}",
        "service: gunicorn on 127.0.0.1 with the load-test settings of "
        "loadtests/local_service.py (login/API rate limits raised"
        + ("" if args.full_argon2 else ", Argon2 lowered to 8 MiB / 1 pass")
        + ")",
        "load generator: one Locust process on the same 2-core machine (it competes for CPU)",
    ]
    if args.from_results:
        rec = write_report(read_results(args.from_results), grid, args, header)
        print((args.out / "report.md").read_text(encoding="utf-8"))
        return 0 if rec.knobs else 1

    run_id = secrets.token_hex(3)
    started = time.monotonic()
    database_url = local_service.fresh_database(args.database)
    admin_password = secrets.token_urlsafe(16)
    seed.create_admin(ADMIN, admin_password, {"DATABASE_URL": database_url, "APP_ENV": "test"})
    rows: list[PointResult] = []
    for point in grid.points():
        rows.append(run_point(point, grid, args, database_url, admin_password, run_id))
        write_results(args.out / "results.csv", rows)  # partial results survive a crash

    criteria = Criteria.from_mapping(grid.criteria)
    rec = recommend(rows, grid.baseline, criteria, args.replicas, args.max_connections)
    if rec.knobs is not None and rec.knobs not in _measured_knobs(rows) and not args.no_confirm:
        confirm = Point("confirm", rec.knobs, ())
        rows.append(run_point(confirm, grid, args, database_url, admin_password, run_id))
        write_results(args.out / "results.csv", rows)
    header.append(f"wall time: {time.monotonic() - started:.0f}s for {len(rows)} points")
    rec = write_report(rows, grid, args, header)
    print((args.out / "report.md").read_text(encoding="utf-8"))
    if rec.knobs is None:
        print("sweep: no recommendation (see warnings)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
