"""The machine's CPUs split between the server a latency run measures and everything else.

A tail measured with the load generator on the server's own cores is the generator's tail as
much as the server's: each of vegeta's wake-ups, and Redis answering it, takes a core from a
worker in the middle of a request, which a client on another machine never does. On two
shared cores the bare one-Redis-GET endpoint, a server doing next to nothing, showed a
p99/p50 of 4.8 and 9.2 in two runs, and 2.1 to 3.7 with the cores split. So the latency runs
give the server a core of its own (one worker) and the generator and Redis the others, when
the machine has two or more.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Split:
    server: frozenset[int]
    others: frozenset[int]

    def describe(self) -> str:
        return (
            f"the server on CPU {_cpu_list(self.server)} (one worker), vegeta and Redis on CPU "
            f"{_cpu_list(self.others)}"
        )


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def split(cpus: set[int] | frozenset[int]) -> Split | None:
    """The first CPU for the server, the rest for the others; None with fewer than two."""
    if len(cpus) < 2:
        return None
    first = min(cpus)
    return Split(frozenset({first}), frozenset(cpus) - {first})


def available() -> set[int]:
    return os.sched_getaffinity(0)


def on(cpus: frozenset[int] | None) -> tuple[str, ...]:
    """The command prefix that runs a program on `cpus` (nothing for None)."""
    return () if cpus is None else ("taskset", "-c", _cpu_list(cpus))


def pin(pid: int, cpus: set[int] | frozenset[int]) -> None:
    """Every thread of a running process onto `cpus`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), cpus)
