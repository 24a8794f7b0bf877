"""The benchmark's table, its notes and the goal ratios, printed from one run's rows."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from statistics import median, quantiles

from scripts.bench.load import Load, describe_failures
from scripts.bench.passes import paired_ratio

CACHED = "GET user, cached, all on (sampling 0.1)"
SAMPLED = "GET user, cached, all on (sampling 1.0)"
OFF = "GET user, cached, instrumentation off"
TWIN = "GET user, cached, all on, twin server (A/A)"
UNCACHED = "GET user, cache off, all on (sampling 0.1)"
ASYNCPG = "bare FastAPI + raw asyncpg row"
REDIS_GET = "bare FastAPI + one Redis GET"
ORM = "bare FastAPI + SQLAlchemy ORM get"


@dataclass
class Row:
    name: str
    load: Load
    cpu_us: float  # worker CPU per request, microseconds
    cores: float  # worker CPU over the run, in cores
    xacts: float  # database transactions per request
    redis: float  # Redis commands per request
    rss_mb: list[float]

    def line(self) -> str:
        return (
            f"{self.name:50} {self.load.rps:8.0f} {self.cpu_us:8.0f} {self.xacts:7.2f} "
            f"{self.redis:7.2f} {self.load.p50_ms:8.2f} {self.load.p99_ms:8.2f} "
            f"{self.load.errors:6d}"
        )


HEADER = (
    f"{'configuration':50} {'req/s':>8} {'CPU us':>8} {'DB tx':>7} {'Redis':>7} "
    f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
)


def _median_row(rows: list[Row]) -> Row:
    """One configuration measured in several passes: the median of each figure (errors are
    summed, RSS is the last pass's)."""
    seconds = sum(row.load.seconds for row in rows)
    return Row(
        name=rows[0].name,
        load=Load(
            requests=round(median(row.load.rps for row in rows) * seconds),
            seconds=seconds,
            p50_ms=median(row.load.p50_ms for row in rows),
            p99_ms=median(row.load.p99_ms for row in rows),
            errors=sum(row.load.errors for row in rows),
        ),
        cpu_us=median(row.cpu_us for row in rows),
        cores=median(row.cores for row in rows),
        xacts=median(row.xacts for row in rows),
        redis=median(row.redis for row in rows),
        rss_mb=rows[-1].rss_mb,
    )


def _spread(rows: list[Row]) -> str:
    """How far apart the middle half of the passes' req/s were (the interquartile range),
    relative to their median."""
    if len(rows) < 2:
        return ""
    rates = [row.load.rps for row in rows]
    lower, _, upper = quantiles(rates, n=4, method="inclusive")
    return f"{100 * (upper - lower) / median(rates):5.0f}%"


def _per_pass(top: list[Row], bottom: list[Row]) -> str:
    """The req/s ratio within each pass, whose rows ran seconds apart: how far the machine
    moved it between passes."""
    if len(top) < 2 or len(top) != len(bottom):
        return ""
    return "  " + " ".join(
        f"{upper.load.rps / lower.load.rps:.2f}" for upper, lower in zip(top, bottom, strict=True)
    )


def _ratio(top: list[Row], bottom: list[Row], figure: Callable[[Row], float]) -> float:
    """top / bottom of one figure: from rows measured in the same passes, the median over
    pairs of passes (paired_ratio); from rows measured once, their own figures'."""
    if len(top) >= 2 and len(top) == len(bottom):
        return paired_ratio([figure(row) for row in top], [figure(row) for row in bottom])
    return median(figure(row) for row in top) / median(figure(row) for row in bottom)


def _ratios(top: list[Row], bottom: list[Row]) -> tuple[float, float]:
    """top / bottom from req/s, and the same from CPU per request (bottom's over top's):
    steadier when the machine is shared."""
    return (
        _ratio(top, bottom, attrgetter("load.rps")),
        _ratio(bottom, top, attrgetter("cpu_us")),
    )


def tail_ratio(load: Load) -> float:
    """p99 over p50: how far the slowest 1 in 100 requests is from the typical one."""
    return load.p99_ms / max(load.p50_ms, 1e-9)


def median_tail(runs: list[Load]) -> Load:
    """The run with the median p99/p50 (of an even count, the higher of the middle two)."""
    return sorted(runs, key=tail_ratio)[len(runs) // 2]


@dataclass(frozen=True)
class Reference:
    """A figure printed under the tail verdict with no goal of its own: something the
    service's tail is read against (`meaning` says what)."""

    label: str
    value: float
    meaning: str
    decimals: int = 2


@dataclass(frozen=True)
class Tail:
    """The latency runs at 70% of the peak: the run the verdict takes, the workers' RSS after
    them, and the references printed under the verdict."""

    load: Load
    rss_mb: list[float]
    references: list[Reference]


# "Cached reads during a login storm keep their p99": the storm's median p99 within this of
# the quiet runs'. A 15 s run's p99 moved by up to a quarter between quiet runs of the same
# server on the machine the bench was tuned on, so a ratio under this is a p99 kept.
STORM_P99_GOAL = 1.5


@dataclass(frozen=True)
class Storm:
    """Cached reads at one constant rate, runs alone and runs during a login storm taken in
    turn on the same server: the verdict is on the ratio of their median p99s. And that
    server's workers' RSS once the storm's hashes are done, each of which held
    ARGON2_MEMORY_KIB."""

    quiet: list[Load]
    stormy: list[Load]
    rss_mb: list[float]

    @property
    def p99_ratio(self) -> float:
        return _median_p99(self.stormy) / max(_median_p99(self.quiet), 1e-9)


def _median_p99(runs: list[Load]) -> float:
    return median(run.p99_ms for run in runs)


def _verdict(value: float, goal: float, higher: bool = True) -> str:
    ok = value >= goal if higher else value <= goal
    return f"{'PASS' if ok else 'MISS'} (goal {'>=' if higher else '<='} {goal})"


def _print_rss(label: str, sizes: list[float]) -> None:
    """The largest worker's RSS against the goal of 150 MB per worker."""
    print(
        f"  {label:30} {max(sizes):5.0f}  {'':6}  {'':6}  {_verdict(max(sizes), 150, higher=False)}"
    )


def print_report(
    measured: list[Row],
    notes: list[str],
    tail: Tail | None,
    mix: str,
    passes: int,
    instructions: dict[str, float],
    storm: Storm | None = None,
) -> None:
    by_name: dict[str, list[Row]] = {}
    for row in measured:
        by_name.setdefault(row.name, []).append(row)
    rows = [_median_row(group) for group in by_name.values()]
    load1, load5, load15 = os.getloadavg()
    print(f"\nworkload: {mix}")
    print("per request: CPU us = the gunicorn workers' own CPU time; DB tx = PostgreSQL")
    print("transactions; Redis = commands Redis processed. 2 workers, wrk -t2 on the same cores")
    print("(the generators under SCHED_BATCH).")
    print(f"rows measured in {passes} interleaved passes (every other one in reverse order) show")
    print("each figure's median, and how far apart the middle half of the passes' req/s were")
    print("(spread: interquartile range).")
    print(f"\n{HEADER} {'spread':>7}")
    for row in rows:
        print(f"{row.line()} {_spread(by_name[row.name]):>7}")
    print()
    for note in notes:
        print(f"- {note}")
    ratios = [
        ("cached all-on / raw asyncpg", CACHED, ASYNCPG, 1.0),
        ("cached all-on / one Redis GET", CACHED, REDIS_GET, 0.7),
        ("instrumentation on / off", CACHED, OFF, 0.85),
        ("sampling 1.0 / sampling 0.1", SAMPLED, CACHED, 0.8),
        ("cache on / cache off", CACHED, UNCACHED, 1.5),
        ("cache off / bare ORM", UNCACHED, ORM, 1.2),
    ]
    if instructions:
        print(
            "\nuser-space instructions per request (callgrind: one worker, one connection, the "
            "requests counted after\nthe same requests warmed it, less the idle worker's own "
            "rate; the kernel's work is not counted)"
        )
        for name, count in instructions.items():
            print(f"  {name:50} {count:12,.0f}")
    print(
        "\nratios of rows measured pass by pass: the median over pairs of passes (one in each "
        "order) of the\npair's geometric mean ratio"
    )
    print(
        f"{'ratios (one run)':32} {'req/s':>5}  {'CPU-us':>6}  {'instr':>6}  "
        f"{'verdict on req/s':22}  req/s, pass by pass"
    )
    for label, top, bottom, goal in ratios:
        by_rps, by_cpu = _ratios(by_name[top], by_name[bottom])
        # And from instructions per request, which the machine's other load does not move.
        by_instructions = (
            f"{instructions[bottom] / instructions[top]:6.3f}"
            if top in instructions and bottom in instructions
            else f"{'-':>6}"
        )
        # Three decimals: a ratio just under its goal must not print as the goal itself.
        line = (
            f"  {label:30} {by_rps:5.3f}  {by_cpu:6.3f}  {by_instructions}  "
            f"{_verdict(by_rps, goal):22}{_per_pass(by_name[top], by_name[bottom])}"
        )
        print(line.rstrip())
    if TWIN in by_name:
        # Two servers of the same code and configuration: a goal ratio within this of its
        # goal is inside what the measurement alone moves.
        twin_rps, twin_cpu = _ratios(by_name[CACHED], by_name[TWIN])
        print(
            f"  {'A/A: all on / its twin':30} {twin_rps:5.3f}  {twin_cpu:6.3f}  {'':6}  "
            "no goal: identical rows, two servers"
            f"{_per_pass(by_name[CACHED], by_name[TWIN])}"
        )
    if tail is not None:
        load = tail.load
        print(
            f"  {'p99 / p50 at 70% of peak':30} {tail_ratio(load):5.2f}  "
            f"{'':6}  {'':6}  {_verdict(tail_ratio(load), 4.0, higher=False)}"
        )
        for reference in tail.references:
            print(
                f"  {'  ' + reference.label:30} {reference.value:5.{reference.decimals}f}  "
                f"{'':6}  {'':6}  no goal: {reference.meaning}"
            )
        print(
            f"  {'errors at 70% of peak':30} {load.errors:5d}  {'':6}  {'':6}  "
            f"{'PASS' if load.errors == 0 else 'MISS'} (goal 0)" + describe_failures(load.failures)
        )
        _print_rss("max worker RSS MB", tail.rss_mb)
    if storm is not None:
        print(
            f"  {'p99 in a login storm / alone':30} {storm.p99_ratio:5.2f}  {'':6}  {'':6}  "
            f"{_verdict(storm.p99_ratio, STORM_P99_GOAL, higher=False)}"
        )
        errors = sum(run.errors for run in (*storm.quiet, *storm.stormy))
        print(
            f"  {'errors, reads beside the storm':30} {errors:5d}  {'':6}  {'':6}  "
            f"{'PASS' if errors == 0 else 'MISS'} (goal 0)"
        )
        _print_rss("worker RSS after the storm MB", storm.rss_mb)
    print(f"\nload average at the end: {load1:.2f} {load5:.2f} {load15:.2f}", end="")
    print(f" ({os.cpu_count()} cores)")
