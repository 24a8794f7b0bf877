"""Runs the benchmark that scripts/bench.sh describes and prints its table and ratios."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

import redis

from loadtests.promscrape import LOOP_LAG, histogram_delta, scrape
from scripts.bench import instructions
from scripts.bench import population as pop
from scripts.bench.counters import (
    cpu_seconds,
    redis_commands,
    rss_mb,
    run_queue_wait_seconds,
    transactions,
)
from scripts.bench.load import SCRIPT, Load, constant_rate, sustained_rate, wrk
from scripts.bench.report import (
    ASYNCPG,
    CACHED,
    OFF,
    ORM,
    REDIS_GET,
    SAMPLED,
    UNCACHED,
    Row,
    print_report,
    tail_ratio,
)
from scripts.bench.stack import REPO, Server, baselines, database, otlp_sink, redis_server, service

MIX = pop.Mix(users=2000, hot_fraction=0.2, hot_share=0.8)
LIST_LENGTH = 20_000


@dataclass
class Bench:
    args: argparse.Namespace
    database_url: str
    redis_url: str
    work_dir: Path
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    constant: tuple[Load, list[float]] | None = None
    # The same constant rate against the bare one-Redis-GET endpoint: the tail that this
    # machine and the generator give a server doing next to nothing.
    floor: Load | None = None
    # Each compared row's user-space instructions per request (instruction_phase).
    instructions: dict[str, float] = field(default_factory=dict)

    def measure(
        self,
        name: str,
        start: Callable[[], AbstractContextManager[Server]],
        targets: list[pop.Target],
        *,
        connections: int | None = None,
        profile: Path | None = None,
    ) -> Row:
        """One closed-loop row: a fresh server, a 2 s warm-up, the measured run. Transactions
        and Redis commands are counted over warm-up and run (the same traffic); CPU over the
        measured run only."""
        connections = connections or self.args.connections
        seconds = self.args.duration
        xacts_before = transactions(self.database_url)
        commands_before = redis_commands(self.redis_url)
        with start() as server:
            warm = wrk(server.base_url, targets, self.work_dir, 2, connections)
            pids = server.worker_pids()
            cpu_before = cpu_seconds(pids)
            with _profiling(server, profile, seconds):
                load = wrk(server.base_url, targets, self.work_dir, seconds, connections)
            cpu = cpu_seconds(pids) - cpu_before
            commands = redis_commands(self.redis_url) - commands_before - 1
            rss = rss_mb(pids)
        xacts = transactions(self.database_url) - xacts_before
        requests = warm.requests + load.requests
        row = Row(
            name=name,
            load=load,
            cpu_us=cpu * 1e6 / max(1, load.requests),
            cores=cpu / load.seconds,
            xacts=xacts / requests,
            redis=commands / requests,
            rss_mb=rss,
        )
        self.rows.append(row)
        print(row.line(), flush=True)
        return row


@contextmanager
def _profiling(server: Server, svg: Path | None, seconds: int) -> Iterator[None]:
    """py-spy on every worker (through the master) while the block runs."""
    if svg is None:
        yield
        return
    svg.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [
            *(str(Path(sys.executable).with_name("py-spy")), "record"),
            *("--pid", str(server.process.pid), "--subprocesses", "--rate", "200"),
            *("--duration", str(max(1, seconds - 1))),
            # A .svg gets the flame graph; any other name the folded stacks, for tools.
            *("--format", "flamegraph" if svg.suffix == ".svg" else "raw"),
            *("--output", str(svg), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            print(f"py-spy failed: {err.decode()[-1000:]}", file=sys.stderr)
        elif svg.exists():
            _strip_local_paths(svg)


def _strip_local_paths(output: Path) -> None:
    """The graph names the processes by command line: keep it free of this checkout's and
    this interpreter's absolute paths, so the file reads the same from any machine."""
    text = output.read_text(encoding="utf-8")
    for prefix in (str(Path(sys.executable).parent) + "/", str(REPO) + "/"):
        text = text.replace(prefix, "")
    output.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--constant-seconds", type=int, default=15)
    parser.add_argument(
        "--passes", type=int, default=3, help="interleaved passes over the compared rows"
    )
    parser.add_argument(
        "--instructions",
        type=int,
        default=1000,
        help="requests per row counted under callgrind (0: none)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="flame graph SVG to write")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seed, then only the cached read all on and instrumentation off (both profiled)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as work,
        redis_server() as redis_url,
        database() as database_url,
        otlp_sink() as sink,
    ):
        bench = Bench(args, database_url, redis_url, Path(work))
        run(bench, sink)
        if args.quick:
            return 0
        print_report(
            bench.rows,
            bench.notes,
            bench.constant,
            bench.floor,
            MIX.describe(),
            bench.args.passes,
            bench.instructions,
        )
    return 0


def run(bench: Bench, sink: str) -> None:
    log_dir = REPO / "build" / "bench"
    common = {
        "APP_ENV": "test",
        "WEB_CONCURRENCY": "2",
        "DATABASE_URL": bench.database_url,
        "REDIS_URL": bench.redis_url,
        "JWT_SECRET_KEY": "benchmark-signing-key-of-at-least-32-bytes",
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "5",
        # Every generated request comes from 127.0.0.1 and a few thousand accounts: the
        # limits stay on (their Redis work is part of every request) but never reject.
        "RATE_LIMIT_API": "100000000/minute",
        "RATE_LIMIT_LOGIN": "100000000/minute",
        # The whole run (a few minutes) must outlive neither the tokens nor the cache.
        "ACCESS_TOKEN_TTL_SECONDS": "3600",
        "CACHE_TTL_SECONDS": "3600",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    all_on = {
        **common,
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    off = {
        **common,
        "OTEL_SDK_DISABLED": "true",
        "METRICS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }

    def start(env: dict[str, str], label: str) -> instructions.Launch:
        return lambda wrapper=(): service(env, log_dir, label, wrapper)

    print(f"seeding: {MIX.describe()}", flush=True)
    ids, emails = pop.insert_users(bench.database_url, MIX.users, login_users=200)
    with service({**common, **pop.SEED_ARGON2}, log_dir, "seed") as server:
        tokens = pop.log_in(server.base_url, len(ids))
        people = pop.Population(ids, tokens, emails)
        bodies = pop.read_every_user(server.base_url, people)
    client = redis.Redis.from_url(bench.redis_url)
    client.mset({f"bench:{user}": body for user, body in zip(ids, bodies, strict=True)})
    client.close()

    reads = pop.reads(people, MIX, LIST_LENGTH)
    if bench.args.quick:
        bench.measure(CACHED, start(all_on, "cached"), reads, profile=bench.args.profile)
        bench.measure(OFF, start(off, "off"), reads, profile=_beside(bench.args.profile, "off"))
        return

    def bare() -> AbstractContextManager[Server]:
        return baselines(common, log_dir)

    # The rows the instrumentation goals compare: their instructions are counted too.
    instrumented: list[tuple[str, instructions.Launch]] = [
        (CACHED, start(all_on, "cached")),
        (SAMPLED, start({**all_on, "OTEL_TRACES_SAMPLER_ARG": "1.0"}, "sampled")),
        (OFF, start(off, "off")),
    ]
    compared: list[tuple[str, Callable[[], AbstractContextManager[Server]], list[pop.Target]]] = [
        *((name, launch, reads) for name, launch in instrumented),
        (UNCACHED, start({**all_on, "CACHE_ENABLED": "false"}, "uncached"), reads),
        *(
            (name, bare, pop.bare(people, MIX, route, LIST_LENGTH))
            for name, route in ((ASYNCPG, "asyncpg"), (REDIS_GET, "redis"), (ORM, "orm"))
        ),
    ]
    # The rows the goal ratios compare, measured in interleaved passes: a burst from another
    # process on this shared machine, or a slow drift, lands on one pass of every row rather
    # than on one row, and the report takes each row's median.
    for number in range(bench.args.passes):
        print(f"pass {number + 1} of {bench.args.passes}", flush=True)
        for name, starter, targets in compared:
            profile = bench.args.profile if number == 0 and name == CACHED else None
            bench.measure(name, starter, targets, profile=profile)
    instruction_phase(bench, instrumented, reads)
    cached_rps = median(row.load.rps for row in bench.rows if row.name == CACHED)
    floor = (bare, pop.bare(people, MIX, "redis", LIST_LENGTH))
    constant_phase(bench, start(all_on, "constant"), reads, cached_rps, floor)
    login_phase(bench, start(all_on, "login"), people, reads, cached_rps)
    bench.measure(
        "PATCH user (own full_name), all on",
        start(all_on, "patch"),
        pop.patches(people, MIX, LIST_LENGTH),
    )


def _beside(profile: Path | None, suffix: str) -> Path | None:
    return (
        None if profile is None else profile.with_name(f"{profile.stem}-{suffix}{profile.suffix}")
    )


def instruction_phase(
    bench: Bench, rows: list[tuple[str, instructions.Launch]], reads: list[pop.Target]
) -> None:
    """The user-space instructions per request (scripts/bench/instructions.py) of the rows the
    instrumentation goals compare, over the first `--instructions` reads.

    Only those: they differ in the worker's own code alone. The other ratios compare servers
    whose PostgreSQL or Redis does a different share of the work, which a count of the
    worker's instructions cannot see (a cache hit saves the database's work, not the
    worker's)."""
    count = bench.args.instructions
    if count <= 0:
        return
    if not instructions.available():
        bench.notes.append("instructions per request: not counted (valgrind is not installed)")
        return
    print(f"counting instructions: {count} requests per row, one worker under callgrind")
    for name, launch in rows:
        out_dir = bench.work_dir / f"callgrind-{len(bench.instructions)}"
        bench.instructions[name] = instructions.per_request(launch, reads[:count], out_dir)
        print(f"{name:50} {bench.instructions[name]:12,.0f} instructions/request", flush=True)


def constant_phase(
    bench: Bench,
    start: Callable[[], AbstractContextManager[Server]],
    reads: list[pop.Target],
    wrk_peak: float,
    floor: tuple[Callable[[], AbstractContextManager[Server]], list[pop.Target]],
) -> None:
    """70% of the measured peak offered at a constant rate: latency with queueing visible.

    The peak is the highest constant rate the service keeps up with beside the generator that
    offers it, found on the same server. vegeta shares the two cores with the service and
    needs more CPU per request than wrk, and arrivals spread evenly cost the service more per
    request than wrk's busy connections: 70% of wrk's peak was past what the service can
    serve beside vegeta, so the percentiles measured an overloaded queue.

    The rate is offered in as many runs as the rows have passes, and the verdict takes the
    run with the median p99/p50 (errors count over all runs): a tail is what 1 request in 100
    meets, and on a shared machine a few seconds of another process's burst decide it, so one
    run measured the neighbours as much as the service. Each run also reports how long the
    workers' event loops waited for a CPU (the scheduler's count), so a reader sees which.

    Between the service's runs the same rate goes to the bare one-Redis-GET endpoint (`floor`):
    its p99/p50 is what the machine and the generator leave of the tail for a server that
    does next to nothing, measured in the same minutes."""
    floor_start, floor_targets = floor
    with start() as server, floor_start() as bare:
        constant_rate(server.base_url, reads, bench.work_dir, 3, max(1, int(wrk_peak * 0.1)))
        peak, tried = sustained_rate(server.base_url, reads, bench.work_dir, wrk_peak)
        rate = max(1, int(peak * 0.7))
        constant_rate(server.base_url, reads, bench.work_dir, 3, rate)  # warm-up
        constant_rate(bare.base_url, floor_targets, bench.work_dir, 3, rate)
        seconds = bench.args.constant_seconds
        pids = server.worker_pids()
        runs: list[tuple[Load, float]] = []
        lags: list[float | None] = []
        floor_runs: list[Load] = []
        for _ in range(max(1, bench.args.passes)):
            waited = run_queue_wait_seconds(pids)
            scraped = scrape(server.metrics_url)
            load = constant_rate(server.base_url, reads, bench.work_dir, seconds, rate)
            runs.append((load, (run_queue_wait_seconds(pids) - waited) / len(pids) / seconds))
            lags.append(
                histogram_delta(scraped, scrape(server.metrics_url), LOOP_LAG).quantile(0.99)
            )
            floor_runs.append(
                constant_rate(bare.base_url, floor_targets, bench.work_dir, seconds, rate)
            )
        rss = rss_mb(pids)
    ordered = sorted(runs, key=lambda run: tail_ratio(run[0]))
    load = replace(ordered[len(ordered) // 2][0], errors=sum(run.errors for run, _ in runs))
    bench.notes.append(
        f"highest constant rate kept up with (vegeta, steps of a tenth of wrk's peak "
        f"{wrk_peak:.0f}/s): {peak}/s; steps: " + "; ".join(tried)
    )
    bench.notes.append(
        f"constant rate {rate}/s (70% of that peak), {len(runs)} runs of {seconds}s, "
        f"GET user cached all on: "
        + "; ".join(
            f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms (p99/p50 "
            f"{tail_ratio(run):.1f}), a worker's event loop waited for a CPU "
            f"{wait * 1000:.0f} ms per second, its lag p99 (the service's own metric) "
            + ("none recorded" if lag is None else f"{lag * 1000:.1f} ms")
            for (run, wait), lag in zip(runs, lags, strict=True)
        )
        + f"; median p99/p50 {tail_ratio(load):.1f} (goal <= 4), "
        f"errors {load.errors} of {sum(run.requests for run, _ in runs)}, worker RSS after "
        + ", ".join(f"{size:.0f}" for size in rss)
        + " MB (goal <= 150 each)"
    )
    bench.constant = (load, rss)
    bench.floor = sorted(floor_runs, key=tail_ratio)[len(floor_runs) // 2]
    bench.notes.append(
        f"the same {rate}/s against the bare one-Redis-GET endpoint, between those runs: "
        + "; ".join(
            f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms (p99/p50 {tail_ratio(run):.1f})"
            for run in floor_runs
        )
        + f"; median p99/p50 {tail_ratio(bench.floor):.1f}, "
        f"errors {sum(run.errors for run in floor_runs)}"
    )


def login_phase(
    bench: Bench,
    start: Callable[[], AbstractContextManager[Server]],
    people: pop.Population,
    reads: list[pop.Target],
    peak: float,
) -> None:
    """Logins at the configured Argon2 cost, and what a login storm does to cached reads."""
    cost = pop.configured_argon2()
    label = f"argon2id t={cost['time_cost']} m={cost['memory_cost'] // 1024}MiB"
    logins = pop.logins(people, 2000)
    row = bench.measure(f"POST login ({label}), all on", start, logins, connections=8)
    bench.notes.append(
        f"logins: {row.load.rps:.1f}/s using {row.cores:.2f} cores of worker CPU = "
        f"{row.load.rps / max(row.cores, 1e-9):.1f} logins/s per core ({label})"
    )
    rate = max(1, int(peak * 0.3))
    seconds = bench.args.constant_seconds
    with start() as server:
        constant_rate(server.base_url, reads, bench.work_dir, 2, rate)
        quiet = constant_rate(server.base_url, reads, bench.work_dir, seconds, rate)
        listing = pop.write_targets(logins, bench.work_dir / "storm.tsv")
        storm = subprocess.Popen(
            [
                *("wrk", "-t1", "-c8", f"-d{seconds + 2}s", "-s", str(SCRIPT)),
                *(server.base_url, "--", str(listing)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            stormy = constant_rate(server.base_url, reads, bench.work_dir, seconds, rate)
        finally:
            storm.communicate(timeout=seconds + 60)
    bench.notes.append(
        f"cached reads at {rate}/s (30% of peak), constant rate: p99 {quiet.p99_ms:.2f} ms alone, "
        f"{stormy.p99_ms:.2f} ms during a login storm (8 connections logging in); "
        f"errors {quiet.errors} and {stormy.errors}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
