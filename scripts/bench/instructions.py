"""User-space instructions per request, counted by callgrind: the steady twin of the CPU column.

CPU time per request moves with whatever else the machine runs (its caches, its clock, a
neighbour's burst): on a shared pair of cores the passes of one row differ by 10-20 %, more
than some goals' margins. A count of the instructions the worker executed does not move so:
the same requests run the same code. Each counted configuration runs once more, with one
gunicorn worker under callgrind whose counting starts switched off (start-up runs at the
emulator's plain speed). The requests are sent once to warm the worker (its connections, the
verified-token memo, every body cached), then counted as they are sent again over one
connection, one at a time; the idle worker's own rate (its timers) is taken off.

What the count leaves out: the kernel's work (system calls run outside it) and what CPU time
adds to the same instructions (cache misses, waits for the GIL).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import httpx

from scripts.bench.population import Target
from scripts.bench.stack import Server

# Long enough for the spans of a pass to be exported (every 5 s) and its samples flushed.
SETTLE_SECONDS = 6.0
IDLE_SECONDS = 4.0
# `--trace-children` follows `user-service serve` into the gunicorn it executes; a forked
# worker is followed anyway.
_VALGRIND = ("valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes")


class Launch(Protocol):
    """Starts a configuration's server; given a command prefix, one worker under it."""

    def __call__(self, wrapper: Sequence[str] = ()) -> AbstractContextManager[Server]: ...


def available() -> bool:
    """Whether valgrind and its callgrind_control are installed."""
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def prefix(out_dir: Path) -> list[str]:
    """The command prefix that runs a server under callgrind, its dumps in `out_dir`."""
    return [*_VALGRIND, f"--callgrind-out-file={out_dir}/callgrind.%p"]


def total_instructions(dump: str) -> int:
    """The instruction total of one callgrind dump (its `totals:` line, or `summary:`)."""
    for line in dump.splitlines():
        if line.startswith(("totals:", "summary:")):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1])
    raise ValueError("callgrind dump without a totals line")


def _control(*args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args], check=True, capture_output=True, text=True, timeout=300
    )


def _send(client: httpx.Client, targets: list[Target]) -> None:
    """The reads, one at a time (only the cached read's rows are counted)."""
    for target in targets:
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        response = client.get(target.path, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"{target.method} {target.path}: {response.status_code}")


def _dump(out_dir: Path, pid: int, number: int, timeout: float = 60) -> int:
    """The total of the worker's `number`th dump (`callgrind.<pid>.<number>`)."""
    path = out_dir / f"callgrind.{pid}.{number}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return total_instructions(path.read_text(errors="replace"))
        except (OSError, ValueError):
            time.sleep(0.2)
    raise TimeoutError(f"no callgrind dump {path}")


def net_per_request(
    counted: int, counted_seconds: float, idle: int, idle_seconds: float, requests: int
) -> float:
    """What the requests themselves executed, per request: the pass's count less what the
    worker executes idle (its timers) over as long."""
    timers = idle * counted_seconds / idle_seconds
    return max(0.0, counted - timers) / requests


def per_request(launch: Launch, targets: list[Target], out_dir: Path) -> float:
    """User-space instructions one worker executed per request of `targets`, counted over a
    second pass of them after a first one warmed it, less its idle timers' share.

    Timers fire per second, not per request: a worker under callgrind runs a few milliseconds
    of them a second (the loop-lag probe, the metrics flush, connection upkeep), which under
    load spread over thousands of requests and here over a few dozen, and a pass that runs
    slower (a busier machine) would count more of them. So the idle worker is counted for a
    few seconds first, after the warm pass's spans were exported, and its rate is taken off.
    The count goes on for as long after the pass, so the export of the pass's last spans is
    in it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with launch(prefix(out_dir)) as server:
        (worker,) = server.worker_pids()
        pid = str(worker)
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            _send(client, targets)
            time.sleep(SETTLE_SECONDS)
            _control("--instr=on", pid)
            started = time.monotonic()
            time.sleep(IDLE_SECONDS)
            _control("--dump", pid)
            idle_seconds = time.monotonic() - started
            started = time.monotonic()
            _send(client, targets)
            time.sleep(SETTLE_SECONDS)
            _control("--dump", pid)
            counted_seconds = time.monotonic() - started
            _control("--instr=off", pid)
        idle = _dump(out_dir, worker, 1)
        counted = _dump(out_dir, worker, 2)
    return net_per_request(counted, counted_seconds, idle, idle_seconds, len(targets))
