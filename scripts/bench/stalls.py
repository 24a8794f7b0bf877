"""How often the machine takes a CPU away from a program that wants all of it.

On a virtual machine the host may run other work on the physical core behind a virtual CPU,
and not every hypervisor tells the guest: on the machine this benchmark was tuned on, a
program spinning on one CPU for 20 s lost 132 ms in gaps of up to 7 ms while the kernel's
steal time grew by one 10 ms tick. A program that reads the clock in a tight loop sees each
such stall as a gap between two readings. A stall of a few milliseconds at 70% load holds up
every request queued behind it, so the latency runs measure the stalls of their CPUs just
before each run, and a reader can tell how much of a tail the machine alone explains.

Run as a module it spins for the given seconds and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from scripts.bench import cores

_MODULE = "scripts.bench.stalls"
_REPO = Path(__file__).resolve().parents[2]  # where `python -m scripts.bench.stalls` runs

# A gap this long is a stall: far longer than a loop turn (well under a microsecond), longer
# than the kernel's own interrupts, and a sizeable part of a request's p99 budget.
STALL_NS = 1_000_000
# Gaps from this long on count towards the time lost; shorter ones are interrupts and the
# interpreter's own hiccups.
LOST_FROM_NS = 100_000


@dataclass(frozen=True)
class Stalls:
    seconds: float
    count: int  # gaps of STALL_NS or longer
    longest_ms: float
    lost_ms: float  # all gaps of LOST_FROM_NS or longer

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def describe(self) -> str:
        return (
            f"{self.per_second:.1f} stalls of 1 ms or more a second (longest "
            f"{self.longest_ms:.1f} ms, {self.lost_ms / self.seconds / 10:.2f}% of the time lost)"
        )


def spin(seconds: float, clock: Callable[[], int] = time.perf_counter_ns) -> Stalls:
    """Read `clock` (nanoseconds) in a tight loop for `seconds` and sum up its gaps."""
    started = last = clock()
    end = started + int(seconds * 1e9)
    count = longest = lost = 0
    while last < end:
        now = clock()
        gap = now - last
        last = now
        if gap >= LOST_FROM_NS:
            lost += gap
            longest = max(longest, gap)
            count += gap >= STALL_NS
    return Stalls((last - started) / 1e9, count, longest / 1e6, lost / 1e6)


def measure(cpus: frozenset[int], seconds: float) -> dict[int, Stalls]:
    """Each of `cpus` spun on at the same time, for `seconds`, by a process of its own."""
    spinners = {
        cpu: subprocess.Popen(
            [*cores.on(frozenset({cpu})), sys.executable, "-m", _MODULE, str(seconds)],
            stdout=subprocess.PIPE,
            cwd=_REPO,
        )
        for cpu in sorted(cpus)
    }
    found: dict[int, Stalls] = {}
    for cpu, spinner in spinners.items():
        out, _ = spinner.communicate(timeout=seconds + 60)
        if spinner.returncode != 0:
            raise RuntimeError(f"the stall meter on CPU {cpu} exited with {spinner.returncode}")
        found[cpu] = Stalls(**json.loads(out))
    return found


def typical(measured: list[Stalls]) -> Stalls:
    """The measurement with the median stall rate (of an even count, the higher of the middle
    two), as the tail verdict takes its run."""
    return sorted(measured, key=lambda stalls: stalls.per_second)[len(measured) // 2]


if __name__ == "__main__":
    print(json.dumps(asdict(spin(float(sys.argv[1])))))
