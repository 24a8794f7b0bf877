"""The two load generators: wrk (closed loop, for peak throughput) replaying a request list,
and vegeta (open loop, a constant offered rate, for honest latency under load)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

from scripts.bench.population import Target, write_targets

SCRIPT = Path(__file__).with_name("replay.lua")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    base_url: str, targets: list[Target], work_dir: Path, seconds: int, connections: int
) -> Load:
    """A closed-loop run: `connections` connections, each sending its next request as soon
    as the last one is answered."""
    listing = write_targets(targets, work_dir / "wrk-targets.tsv")
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency"]
    command += ["-s", str(SCRIPT)]
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


def _attack(base_url: str, targets: list[Target], work_dir: Path, seconds: int, rate: str) -> Load:
    listing = _vegeta_targets(base_url, targets, work_dir / "vegeta-targets.jsonl")
    attack = subprocess.run(
        [
            *(vegeta_binary(), "attack", "-format=json", f"-targets={listing}"),
            *(f"-duration={seconds}s", "-timeout=10s", *rate.split()),
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
    return Load(
        requests=int(summary["requests"]),
        seconds=float(summary["duration"]) / 1e9,
        p50_ms=float(summary["latencies"]["50th"]) / 1e6,
        p99_ms=float(summary["latencies"]["99th"]) / 1e6,
        errors=int(summary["requests"]) - ok,
    )


def constant_rate(
    base_url: str, targets: list[Target], work_dir: Path, seconds: int, rate: int
) -> Load:
    """An open-loop run: `rate` requests every second whatever the latency, so queueing
    shows up in the percentiles instead of slowing the generator down."""
    return _attack(base_url, targets, work_dir, seconds, f"-rate={rate}/s -max-workers=256")


def vegeta_peak(
    base_url: str, targets: list[Target], work_dir: Path, seconds: int, connections: int
) -> Load:
    """The peak the service reaches with vegeta itself as the client (`connections` workers,
    each sending as soon as its last answer came): on shared cores vegeta costs more CPU per
    request than wrk, so the rate the service can sustain beside it is lower than wrk's peak."""
    return _attack(base_url, targets, work_dir, seconds, f"-rate=0 -max-workers={connections}")
