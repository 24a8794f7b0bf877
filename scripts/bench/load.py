"""The two load generators: wrk (closed loop, for peak throughput) replaying a request list,
and vegeta (open loop, a constant offered rate, for honest latency under load)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson

from scripts.bench import cores
from scripts.bench.population import Target, write_targets

SCRIPT = Path(__file__).with_name("replay.lua")
# Each generator runs under SCHED_BATCH: where it shares the cores with the server (every run
# but the latency runs, which split them: cores.py) it keeps its fair share, but its wake-ups
# (an answer arrived) no longer preempt the server it measures in the middle of a request, as
# a client on another machine never does. At 1200 requests a second on shared cores (three
# interleaved 15 s runs each, medians), vegeta's wake-ups had the service's p99/p50 at 8.1 and
# the bare Redis GET's at 5.9; under SCHED_BATCH, 5.5 and 4.3.
GENERATOR: Final = ("chrt", "--batch", "0")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    # Answered requests per second until the last answer (vegeta's; wrk's is the rate).
    served_per_second: float = 0.0
    # What the errors were, with their counts (vegeta's runs; see failure_kinds).
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    base_url: str,
    targets: list[Target],
    work_dir: Path,
    seconds: int,
    connections: int,
    cpus: frozenset[int] | None = None,
) -> Load:
    """A closed-loop run: `connections` connections, each sending its next request as soon
    as the last one is answered."""
    listing = write_targets(targets, work_dir / "wrk-targets.tsv")
    command = [*cores.on(cpus), *GENERATOR, "wrk", "-t2", f"-c{connections}", f"-d{seconds}s"]
    command += ["--timeout", "30s", "--latency", "-s", str(SCRIPT)]
    out = subprocess.run(
        [*command, base_url, "--", str(listing)],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    assert total, out
    elapsed = float(total.group(2)) * _UNITS[total.group(3)] / 1000
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(group) for group in match.groups())
    return Load(
        requests=int(total.group(1)),
        seconds=elapsed,
        p50_ms=_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        p99_ms=_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        errors=errors,
    )


def vegeta_binary() -> str:
    """Built by scripts/bench.sh from its pinned Go module into a cache directory."""
    return os.environ.get("VEGETA", "vegeta")


def _vegeta_targets(base_url: str, targets: list[Target], path: Path) -> Path:
    with path.open("wb") as out:
        for target in targets:
            header: dict[str, list[str]] = {}
            if target.token:
                header["Authorization"] = [f"Bearer {target.token}"]
            if target.content_type:
                header["Content-Type"] = [target.content_type]
            line = {"method": target.method, "url": base_url + target.path, "header": header}
            if target.body:
                line["body"] = base64.b64encode(target.body).decode()
            out.write(orjson.dumps(line) + b"\n")
    return path


def constant_rate(
    base_url: str,
    targets: list[Target],
    work_dir: Path,
    seconds: int,
    rate: int,
    cpus: frozenset[int] | None = None,
) -> Load:
    """An open-loop run: `rate` requests every second whatever the latency, so queueing
    shows up in the percentiles instead of slowing the generator down. vegeta runs on `cpus`
    when given."""
    listing = _vegeta_targets(base_url, targets, work_dir / "vegeta-targets.jsonl")
    attack = subprocess.run(
        [
            *(*cores.on(cpus), *GENERATOR, vegeta_binary(), "attack", "-format=json"),
            f"-targets={listing}",
            *(f"-rate={rate}/s", f"-duration={seconds}s", "-max-workers=256", "-timeout=10s"),
        ],
        check=True,
        capture_output=True,
        timeout=seconds + 60,
    ).stdout
    report = subprocess.run(
        [vegeta_binary(), "report", "-type=json"],
        input=attack,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    summary = orjson.loads(report)
    codes: dict[str, int] = summary["status_codes"]
    ok = sum(count for code, count in codes.items() if code.startswith("2"))
    messages: list[str] = summary.get("errors") or []
    return Load(
        requests=int(summary["requests"]),
        seconds=float(summary["duration"]) / 1e9,
        p50_ms=float(summary["latencies"]["50th"]) / 1e6,
        p99_ms=float(summary["latencies"]["99th"]) / 1e6,
        errors=int(summary["requests"]) - ok,
        served_per_second=float(summary["throughput"]),
        failures=failure_kinds(codes, messages),
    )


# vegeta's message for a request it sent: `Get "http://...": <reason>`. The URL names one
# user of thousands, so it is left out: what matters is how many failed for which reason.
_REQUEST_PREFIX = re.compile(r'^\w+ "[^"]*": ')
# The messages vegeta also lists for each non-2xx status ("503 Service Unavailable").
_STATUS_MESSAGE = re.compile(r"^\d{3} ")


def failure_kinds(status_codes: dict[str, int], messages: list[str]) -> dict[str, int]:
    """The failed requests of a vegeta report by kind: each non-2xx status ("HTTP 503") and
    the requests that got no answer at all (status 0: a timeout, a refused or reset
    connection), the latter named by vegeta's distinct reasons, as it counts only them."""
    kinds = {
        f"HTTP {code}": count
        for code, count in sorted(status_codes.items())
        if count and code != "0" and not code.startswith("2")
    }
    unanswered = status_codes.get("0", 0)
    if unanswered:
        reasons = sorted(
            {_REQUEST_PREFIX.sub("", text) for text in messages if not _STATUS_MESSAGE.match(text)}
        )
        kinds[f"no answer ({'; '.join(reasons) or 'no reason given'})"] = unanswered
    return kinds


def merged_failures(loads: Iterable[Load]) -> dict[str, int]:
    """The failure kinds of several runs, counts added up."""
    total: Counter[str] = Counter()
    for load in loads:
        total.update(load.failures)
    return dict(total)


def describe_failures(failures: dict[str, int]) -> str:
    """Nothing without failures, else ` (3 HTTP 503, 1 no answer (...))` to follow a count."""
    if not failures:
        return ""
    return " (" + ", ".join(f"{count} {kind}" for kind, count in failures.items()) + ")"


def sustained_rate(
    base_url: str,
    targets: list[Target],
    work_dir: Path,
    ceiling: float,
    cpus: frozenset[int] | None = None,
) -> tuple[int, list[str]]:
    """The highest constant rate the service keeps up with, each step offered for 4 s (see
    highest_kept_rate)."""
    return highest_kept_rate(
        ceiling, lambda rate: constant_rate(base_url, targets, work_dir, 4, rate, cpus)
    )


def highest_kept_rate(ceiling: float, probe: Callable[[int], Load]) -> tuple[int, list[str]]:
    """The highest rate `probe` keeps up with, in steps of a tenth of `ceiling` (wrk's
    closed-loop peak). A step is kept up with when every request is answered, the answers
    come as fast as the requests were sent, and no queue stands: the median latency stays
    within 3 times the first, nearly idle, step's (a short probe can absorb a growing queue
    that a longer run would not).

    A step that falls behind is offered once more before the search stops: one short probe
    on a shared machine can meet another process's burst, and a search stopped by it puts
    the latency runs at 70% of a rate far below the service's. Once, on this machine, the
    second step (564/s) came out at a p50 of 4.0 ms and the search stopped there; the same
    service started again kept up with 2580/s. A real knee falls behind twice.

    Returns the rate and one line per probe (if not even the first step is kept up with:
    what that step served)."""
    kept_up = 0.0
    idle_p50: float | None = None
    tried: list[str] = []
    for tenth in range(1, 11):
        rate = max(1, int(ceiling * tenth / 10))
        for attempt in range(1 if tenth == 1 else 2):
            load = probe(rate)
            idle_p50 = load.p50_ms if idle_p50 is None else idle_p50
            ok = (
                load.errors == 0
                and load.served_per_second >= 0.97 * rate
                and load.p50_ms <= 3 * idle_p50
            )
            tried.append(
                f"{rate}/s{' again' if attempt else ''}: served {load.served_per_second:.0f}/s, "
                f"p50 {load.p50_ms:.1f} ms, errors {load.errors}{'' if ok else ' (falls behind)'}"
            )
            if ok:
                break
        if not ok:
            kept_up = kept_up or load.served_per_second
            break
        kept_up = rate
    return max(1, int(kept_up)), tried
