"""Runs the benchmark that scripts/bench.sh describes and prints its table and ratios."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from statistics import median

import redis

from loadtests.promscrape import LOOP_LAG, histogram_delta, scrape
from scripts.bench import cores, instructions, stalls
from scripts.bench import population as pop
from scripts.bench.counters import (
    cpu_seconds,
    cpu_us_per_request,
    redis_commands,
    rss_mb,
    run_queue_wait_seconds,
    transactions,
)
from scripts.bench.load import (
    Load,
    constant_rate,
    describe_failures,
    merged_failures,
    sustained_rate,
    wrk,
)
from scripts.bench.passes import even_passes, lead_in_seconds, pass_order
from scripts.bench.report import (
    ASYNCPG,
    CACHED,
    OFF,
    ORM,
    REDIS_GET,
    SAMPLED,
    TWIN,
    UNCACHED,
    Reference,
    Row,
    Storm,
    Tail,
    median_tail,
    print_report,
    tail_ratio,
)
from scripts.bench.stack import (
    REPO,
    Server,
    baselines,
    database,
    otlp_sink,
    redis_server,
    service,
    steady_server,
)

# Long enough to meet a machine stalling a few times a second, short beside a run.
STALL_SECONDS = 2.0
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
    # The latency runs' verdict, with the figures it is read against (constant_phase).
    tail: Tail | None = None
    # Each compared row's user-space instructions per request (instruction_phase).
    instructions: dict[str, float] = field(default_factory=dict)
    # Cached reads alone and during a login storm, and their verdict (login_phase).
    storm: Storm | None = None

    def measure(
        self,
        name: str,
        start: Callable[[], AbstractContextManager[Server]],
        targets: list[pop.Target],
        *,
        connections: int | None = None,
        seconds: int | None = None,
        profile: Path | None = None,
        record: bool = True,
    ) -> Row:
        """One row on a server of its own: a fresh server, a 2 s warm-up, the measured run.
        Its transactions are read once the server has stopped (over warm-up and run, the same
        traffic): a PostgreSQL backend reports its counts at most once a second, and an idle
        one up to 10 s later, but always as it exits."""
        connections = connections or self.args.connections
        xacts_before = transactions(self.database_url)
        with start() as server:
            warm = wrk(server.base_url, targets, self.work_dir, 2, connections)
            row = self.run_on(
                name, server, targets, seconds or self.args.duration, connections, profile
            )
        xacts = transactions(self.database_url) - xacts_before
        row = replace(row, xacts=xacts / max(1, warm.requests + row.load.requests))
        if record:
            return self.keep(row)
        print(f"{row.line()}  (counting run)", flush=True)
        return row

    def run_on(
        self,
        name: str,
        server: Server,
        targets: list[pop.Target],
        seconds: int,
        connections: int,
        profile: Path | None = None,
    ) -> Row:
        """One closed-loop run against a warm server, its transactions not counted (NaN):
        Redis commands from the server's own counter, CPU from this server's workers."""
        commands_before = redis_commands(self.redis_url)
        pids = server.worker_pids()
        cpu_before = cpu_seconds(pids)
        with _profiling(server, profile, seconds):
            load = wrk(server.base_url, targets, self.work_dir, seconds, connections)
        cpu = cpu_seconds(pids) - cpu_before
        # Less the INFO that read the count before the run.
        commands = redis_commands(self.redis_url) - commands_before - 1
        return Row(
            name=name,
            load=load,
            cpu_us=cpu * 1e6 / max(1, load.requests),
            cores=cpu / load.seconds,
            xacts=math.nan,
            redis=commands / max(1, load.requests),
            rss_mb=rss_mb(pids),
        )

    def keep(self, row: Row) -> Row:
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
        "--passes",
        type=even_passes,
        default=10,
        help="interleaved passes over the compared rows (even: every other pass is reversed)",
    )
    parser.add_argument(
        "--burst", type=int, default=3, help="seconds of each compared row in each pass"
    )
    parser.add_argument(
        "--lead-in",
        type=lead_in_seconds,
        default=1,
        help="seconds of unmeasured load on each compared row before its burst (0: none)",
    )
    parser.add_argument(
        "--constant-runs", type=int, default=3, help="runs at 70%% of the peak constant rate"
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
            bench.tail,
            MIX.describe(),
            bench.args.passes,
            bench.instructions,
            bench.storm,
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
    compared: list[Compared] = [
        *(Compared(name, launch, reads) for name, launch in instrumented),
        # The all-on row again on a server of its own: identical rows' ratio shows how far
        # the measurement alone moves a ratio.
        Compared(TWIN, start(all_on, "cached-twin"), reads),
        Compared(UNCACHED, start({**all_on, "CACHE_ENABLED": "false"}, "uncached"), reads),
        *(
            Compared(name, bare, pop.bare(people, MIX, route, LIST_LENGTH), shared="bare")
            for name, route in ((ASYNCPG, "asyncpg"), (REDIS_GET, "redis"), (ORM, "orm"))
        ),
    ]
    compared_phase(bench, compared)
    instruction_phase(bench, instrumented, reads)
    cached_rps = median(row.load.rps for row in bench.rows if row.name == CACHED)
    off_rps = median(row.load.rps for row in bench.rows if row.name == OFF)

    def on_cpus(env: dict[str, str], label: str) -> OnCpus:
        return lambda cpus: service(env, log_dir, label, cpus=cpus)

    floor = (
        lambda cpus: baselines(common, log_dir, cpus),
        pop.bare(people, MIX, "redis", LIST_LENGTH),
    )
    steady = partial(steady_server, bench.work_dir, log_dir)
    peak = constant_phase(bench, on_cpus(all_on, "constant"), reads, cached_rps, floor, steady)
    uninstrumented_tail_phase(bench, on_cpus(off, "constant-off"), reads, off_rps)
    login_phase(bench, start(all_on, "login"), on_cpus(all_on, "storm"), people, reads, peak)
    bench.measure(
        "PATCH user (own full_name), all on",
        start(all_on, "patch"),
        pop.patches(people, MIX, LIST_LENGTH),
    )


@dataclass(frozen=True)
class Compared:
    """A row the goal ratios compare: how to start its server and what to send it. Rows
    with the same `shared` name are served by one server (the bare endpoints)."""

    name: str
    start: Callable[[], AbstractContextManager[Server]]
    targets: list[pop.Target]
    shared: str = ""

    @property
    def server(self) -> str:
        return self.shared or self.name


def compared_phase(bench: Bench, rows: list[Compared]) -> None:
    """The rows the goal ratios compare, side by side in interleaved passes.

    Each row first runs once on a server of its own, which stops before its database
    transactions are read (Bench.measure); that run is not one of the medians. Then every
    row's server runs at once, and each pass sends each row a burst of `--burst` seconds in
    turn: the machine's other load moves CPU per request by 10-30% within seconds, so a
    ratio is steadiest from many short runs of its two rows a few seconds apart. Every other
    pass runs the rows in reverse (pass_order), so that no row keeps the same place, and
    each burst follows `--lead-in` seconds of unmeasured load on its own server.

    Each pair of passes runs on servers of its own, started afresh, in the order of the
    pair's first pass: of identical servers started one after another and kept for a whole
    run, one could stay 10-20% dearer in CPU per request than the others from its first pass
    to its last, most often the one started first. A ratio read from one server of each row
    carried that server's luck into every pass; over fresh servers it is one pair's luck,
    which the median over the pairs drops. The idle servers beside the measured one cost the
    machine their timers alone, the same for every row. The table takes each row's median
    over the passes."""
    counted = {
        row.name: bench.measure(
            row.name, row.start, row.targets, seconds=bench.args.burst, record=False
        )
        for row in rows
    }
    for pair in range(bench.args.passes // 2):
        with ExitStack() as stack:
            servers = _fresh_servers(bench, stack, pass_order(rows, pair))
            if pair == 0 and bench.args.profile is not None:
                # A run of its own: a flame graph wants more than a burst.
                (cached,) = (row for row in rows if row.name == CACHED)
                bench.run_on(
                    CACHED,
                    servers[CACHED],
                    cached.targets,
                    bench.args.duration,
                    bench.args.connections,
                    bench.args.profile,
                )
            for number in (2 * pair, 2 * pair + 1):
                print(f"pass {number + 1} of {bench.args.passes}", flush=True)
                for row in pass_order(rows, number):
                    if bench.args.lead_in:
                        wrk(
                            servers[row.server].base_url,
                            row.targets,
                            bench.work_dir,
                            bench.args.lead_in,
                            bench.args.connections,
                        )
                    measured = bench.run_on(
                        row.name,
                        servers[row.server],
                        row.targets,
                        bench.args.burst,
                        bench.args.connections,
                    )
                    bench.keep(replace(measured, xacts=counted[row.name].xacts))


def _fresh_servers(bench: Bench, stack: ExitStack, rows: list[Compared]) -> dict[str, Server]:
    """Every row's server started, in the rows' order, and warmed by 2 s of its own reads;
    each stops as `stack` closes."""
    servers: dict[str, Server] = {}
    for row in rows:
        if row.server not in servers:
            servers[row.server] = stack.enter_context(row.start())
    for row in rows:
        wrk(servers[row.server].base_url, row.targets, bench.work_dir, 2, bench.args.connections)
    return servers


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


# Starts a server on the given CPUs, a worker for each (None: as the other rows run).
OnCpus = Callable[[frozenset[int] | None], AbstractContextManager[Server]]


@contextmanager
def _others_on(redis_url: str, cpus: frozenset[int] | None) -> Iterator[None]:
    """Redis and this process (its OTLP sink) on `cpus` while the block runs."""
    if cpus is None:
        yield
        return
    client = redis.Redis.from_url(redis_url)
    redis_pid = int(client.info("server")["process_id"])
    client.close()
    everywhere = cores.available()
    for pid in (redis_pid, os.getpid()):
        cores.pin(pid, cpus)
    try:
        yield
    finally:
        for pid in (redis_pid, os.getpid()):
            cores.pin(pid, everywhere)


def constant_phase(
    bench: Bench,
    start: OnCpus,
    reads: list[pop.Target],
    wrk_peak: float,
    floor: tuple[OnCpus, list[pop.Target]],
    steady: OnCpus,
) -> int:
    """70% of the measured peak offered at a constant rate: latency with queueing visible.
    Returns that peak, the highest constant rate the server kept up with on its core.

    The server runs on a core of its own (one worker), vegeta and Redis on the others
    (scripts/bench/cores.py says why), when the machine has two or more. The peak is the
    highest constant rate the service keeps up with so, found on the same server in steps
    of a tenth of wrk's peak there: arrivals spread evenly cost the service more per request
    than wrk's busy connections, so 70% of wrk's peak would measure an overloaded queue.

    The rate is offered in `--constant-runs` runs, and the verdict takes the
    run with the median p99/p50 (errors count over all runs): a tail is what 1 request in 100
    meets, and on a shared machine a few seconds of another process's burst decide it, so one
    run measured the neighbours as much as the service. Each run also reports how long the
    workers' event loops waited for a CPU (the scheduler's count), so a reader sees which.

    Between the service's runs the same rate goes to the bare one-Redis-GET endpoint (`floor`):
    its p99/p50 is what the machine and the generator leave of the tail for a server that
    does next to nothing, measured in the same minutes. So does a server of fixed cost
    (`steady`, scripts/bench/steady): each of its requests costs the CPU that the service's
    requests cost on average in the run before, with no variance, so its p99/p50 is what the
    machine and the generator alone make of the tail at the service's load. Before each run
    every CPU is spun on for a moment (scripts/bench/stalls.py): the stalls the machine itself
    gave them."""
    every_cpu = frozenset(cores.available())  # before this process moves to the others
    split = cores.split(every_cpu)
    mine, others = (split.server, split.others) if split else (None, None)
    floor_start, floor_targets = floor
    work = bench.work_dir
    with (
        start(mine) as server,
        floor_start(mine) as bare,
        steady(mine) as fixed,
        _others_on(bench.redis_url, others),
    ):
        wrk_peak, peak, tried, rate = _seventy_percent(bench, server, reads, wrk_peak, split)
        constant_rate(bare.base_url, floor_targets, work, 3, rate, others)
        own_us = _fixed_cost_overhead_us(fixed, rate, work, others)
        seconds = bench.args.constant_seconds
        pids = server.worker_pids()
        runs: list[tuple[Load, float]] = []
        lags: list[float | None] = []
        floor_runs: list[Load] = []
        fixed_runs: list[tuple[Load, float]] = []
        stalled: list[dict[int, stalls.Stalls]] = []
        for _ in range(max(1, bench.args.constant_runs)):
            stalled.append(stalls.measure(every_cpu, STALL_SECONDS))
            waited = run_queue_wait_seconds(pids)
            scraped = scrape(server.metrics_url)
            load, service_us = cpu_us_per_request(
                pids, lambda: constant_rate(server.base_url, reads, work, seconds, rate, others)
            )
            runs.append((load, (run_queue_wait_seconds(pids) - waited) / len(pids) / seconds))
            lags.append(
                histogram_delta(scraped, scrape(server.metrics_url), LOOP_LAG).quantile(0.99)
            )
            floor_runs.append(
                constant_rate(bare.base_url, floor_targets, work, seconds, rate, others)
            )
            targets = _fixed_cost(max(0.0, service_us - own_us))
            fixed_runs.append(
                (constant_rate(fixed.base_url, targets, work, seconds, rate, others), service_us)
            )
        rss = rss_mb(pids)
    load = replace(
        median_tail([run for run, _ in runs]),
        errors=sum(run.errors for run, _ in runs),
        failures=merged_failures(run for run, _ in runs),
    )
    bench.notes.append(
        f"latency runs: {split.describe() if split else 'the server and vegeta share the CPUs'}"
    )
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
            + ", just before it "
            + ", ".join(f"CPU {cpu} had {found.describe()}" for cpu, found in before.items())
            for (run, wait), lag, before in zip(runs, lags, stalled, strict=True)
        )
        + f"; median p99/p50 {tail_ratio(load):.1f} (goal <= 4), "
        f"errors {load.errors} of {sum(run.requests for run, _ in runs)}"
        f"{describe_failures(load.failures)}, worker RSS after "
        + ", ".join(f"{size:.0f}" for size in rss)
        + " MB (goal <= 150 each)"
    )
    server_cpu = min(mine or every_cpu)
    server_stalls = stalls.typical([before[server_cpu] for before in stalled])
    floor_load = median_tail(floor_runs)
    fixed_load = median_tail([run for run, _ in fixed_runs])
    bench.notes.append(
        f"the same {rate}/s against the bare one-Redis-GET endpoint, between those runs: "
        + "; ".join(
            f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms (p99/p50 {tail_ratio(run):.1f})"
            for run in floor_runs
        )
        + f"; median p99/p50 {tail_ratio(floor_load):.1f}, "
        f"errors {sum(run.errors for run in floor_runs)}"
        + describe_failures(merged_failures(floor_runs))
    )
    bench.notes.append(
        f"the same {rate}/s against a server of fixed cost on the same CPU, each request "
        f"costing the CPU that the service's requests cost on average in the run before it "
        f"({own_us:.0f} us of its own plus fixed work): "
        + "; ".join(
            f"{service_us:.0f} us, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms "
            f"(p99/p50 {tail_ratio(run):.1f})"
            for run, service_us in fixed_runs
        )
        + f"; median p99/p50 {tail_ratio(fixed_load):.1f}, "
        f"errors {sum(run.errors for run, _ in fixed_runs)}"
        + describe_failures(merged_failures(run for run, _ in fixed_runs))
    )
    bench.tail = Tail(
        load,
        rss,
        [
            Reference(
                "bare Redis GET, same rate",
                tail_ratio(floor_load),
                "the machine's and the generator's own tail",
            ),
            Reference(
                "fixed-cost server, same load",
                tail_ratio(fixed_load),
                "the service's CPU per request, with no variance",
            ),
            Reference(
                "server CPU stalls >= 1 ms/s",
                server_stalls.per_second,
                f"the machine's own, longest {server_stalls.longest_ms:.1f} ms",
                decimals=1,
            ),
        ],
    )
    return peak


def _fixed_cost(work_us: float) -> list[pop.Target]:
    """The request that asks the fixed-cost server for `work_us` of CPU work."""
    return [pop.Target("GET", f"/?work_us={work_us:.1f}")]


def _fixed_cost_overhead_us(
    fixed: Server, rate: int, work_dir: Path, cpus: frozenset[int] | None
) -> float:
    """The fixed-cost server's own CPU per request at `rate` (parsing, answering, waking up),
    from a run that asks it for no work: also its warm-up."""
    _, own_us = cpu_us_per_request(
        [fixed.process.pid],
        lambda: constant_rate(fixed.base_url, _fixed_cost(0), work_dir, 3, rate, cpus),
    )
    return own_us


def _seventy_percent(
    bench: Bench,
    server: Server,
    reads: list[pop.Target],
    wrk_peak: float,
    split: cores.Split | None,
) -> tuple[float, int, list[str], int]:
    """wrk's peak on `server` (`wrk_peak`, the configuration's peak with the cores shared, unless
    the server runs on a core of its own), the highest constant rate it keeps up with, the
    steps tried, and 70% of that rate, after a warm-up run at it."""
    work = bench.work_dir
    mine, others = (split.server, split.others) if split else (None, None)
    if mine is not None:  # the peak of this one worker, not of the other rows' two
        wrk(server.base_url, reads, work, 2, bench.args.connections, others)
        wrk_peak = wrk(server.base_url, reads, work, 5, bench.args.connections, others).rps
    constant_rate(server.base_url, reads, work, 3, max(1, int(wrk_peak * 0.1)), others)
    peak, tried = sustained_rate(server.base_url, reads, work, wrk_peak, others)
    rate = max(1, int(peak * 0.7))
    constant_rate(server.base_url, reads, work, 3, rate, others)  # warm-up
    return wrk_peak, peak, tried, rate


def uninstrumented_tail_phase(
    bench: Bench, start: OnCpus, reads: list[pop.Target], wrk_peak: float
) -> None:
    """The service with its instrumentation off, at 70% of its own peak and measured as the
    constant phase measures the service (no goal): whether a tail over the goal is the
    telemetry's or the same code's and machine's without any."""
    split = cores.split(cores.available())
    mine, others = (split.server, split.others) if split else (None, None)
    with start(mine) as server, _others_on(bench.redis_url, others):
        wrk_peak, peak, tried, rate = _seventy_percent(bench, server, reads, wrk_peak, split)
        runs = [
            constant_rate(
                server.base_url, reads, bench.work_dir, bench.args.constant_seconds, rate, others
            )
            for _ in range(max(1, bench.args.constant_runs))
        ]
    uninstrumented = median_tail(runs)
    if bench.tail is not None:
        bench.tail.references.append(
            Reference(
                "instrumentation off, own 70%",
                tail_ratio(uninstrumented),
                "the service without telemetry at 70% of its own peak",
            )
        )
    bench.notes.append(
        f"instrumentation off, on the same core: highest constant rate {peak}/s (wrk's peak "
        f"{wrk_peak:.0f}/s), at 70% of it ({rate}/s): "
        + "; ".join(
            f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms (p99/p50 {tail_ratio(run):.1f})"
            for run in runs
        )
        + f"; median p99/p50 {tail_ratio(uninstrumented):.1f}, "
        f"errors {sum(run.errors for run in runs)}{describe_failures(merged_failures(runs))}; "
        "steps: " + "; ".join(tried)
    )


def login_phase(
    bench: Bench,
    start: Callable[[], AbstractContextManager[Server]],
    start_on: OnCpus,
    people: pop.Population,
    reads: list[pop.Target],
    peak: int,
) -> None:
    """Logins at the configured Argon2 cost, and what a login storm does to cached reads.

    The storm's runs use the latency runs' layout (constant_phase): the server on a core of its
    own, vegeta, wrk and Redis on the others. With every process on both cores, the storm
    measured the generator more than the service: the hashing threads, idle to the service's
    event loops, still keep the service's process group busy on both cores, and the kernel's
    fair share between groups then made vegeta (another group, under SCHED_BATCH) wait for a
    CPU. A 2-core run measured cached reads' p50 tripled and p99 five-fold that way, and p50
    unchanged and p99 1.7-fold with vegeta at normal priority. A client on another machine
    meets only the second."""
    cost = pop.configured_argon2()
    label = f"argon2id t={cost['time_cost']} m={cost['memory_cost'] // 1024}MiB"
    logins = pop.logins(people, 2000)
    row = bench.measure(f"POST login ({label}), all on", start, logins, connections=8)
    bench.notes.append(
        f"logins: {row.load.rps:.1f}/s using {row.cores:.2f} cores of worker CPU = "
        f"{row.load.rps / max(row.cores, 1e-9):.1f} logins/s per core ({label})"
    )
    split = cores.split(frozenset(cores.available()))
    mine, others = (split.server, split.others) if split else (None, None)
    rate = max(1, int(peak * 0.3))
    seconds = bench.args.constant_seconds
    work = bench.work_dir
    quiet: list[Load] = []
    stormy: list[tuple[Load, Load, float]] = []
    with (
        start_on(mine) as server,
        _others_on(bench.redis_url, others),
        ThreadPoolExecutor(1) as storm_runner,
    ):
        pids = server.worker_pids()
        constant_rate(server.base_url, reads, work, 2, rate, others)
        for _ in range(max(1, bench.args.constant_runs)):
            quiet.append(constant_rate(server.base_url, reads, work, seconds, rate, others))
            storm = storm_runner.submit(wrk, server.base_url, logins, work, seconds + 2, 8, others)
            waited = run_queue_wait_seconds(pids)
            reading = constant_rate(server.base_url, reads, work, seconds, rate, others)
            waited = run_queue_wait_seconds(pids) - waited
            stormy.append((reading, storm.result(), waited / len(pids) / seconds))
            _wait_for_hashes(server)
        rss = rss_mb(pids)
    bench.storm = Storm(quiet, [reading for reading, _, _ in stormy], rss)
    bench.notes.append(
        f"cached reads at {rate}/s (30% of the highest constant rate, on the same core), runs "
        f"alone and during a login storm (8 connections logging in) in turn: alone "
        + "; ".join(f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms" for run in quiet)
        + "; in the storm "
        + "; ".join(
            f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms ({logged_in.rps:.1f} logins/s, "
            f"{logged_in.errors} failed; the event loop waited for a CPU {wait * 1000:.0f} "
            "ms per second)"
            for run, logged_in, wait in stormy
        )
        + f"; p99 in the storm / alone, medians: {bench.storm.p99_ratio:.2f}, errors "
        f"{sum(run.errors for run in (*bench.storm.quiet, *bench.storm.stormy))}; worker RSS "
        "once the last storm's hashes were done: "
        + ", ".join(f"{size:.0f}" for size in rss)
        + " MB (goal <= 150 each)"
    )


def _wait_for_hashes(server: Server, timeout: float = 30) -> None:
    """Until the logins wrk left queued are done: a hash runs to its end after its client
    has gone, and the next quiet run must not share the core with it."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(server.worker_pids())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(server.worker_pids())
        if now - before < 0.05:  # under a tenth of a core: only timers are left
            return
        before = now


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
