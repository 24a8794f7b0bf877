"""CPU seconds the service's workers and its PostgreSQL backends spent during a run.

Throughput on a shared 2-core machine moves with the neighbours' load; CPU per request
barely does, so the sweep reports both. Linux /proc only; elsewhere the numbers are 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, utime + stime in seconds) of a process, or None if it is gone."""
    try:
        text = (_PROC / pid / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _cmdline(pid: str) -> str:
    try:
        return (_PROC / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class CpuSample:
    service: dict[str, float]  # pid -> CPU seconds of the gunicorn master and its workers
    database: dict[str, float]  # pid -> CPU seconds of backends connected to the database


def sample(root_pid: int, database: str) -> CpuSample:
    service: dict[str, float] = {}
    backends: dict[str, float] = {}
    # A backend's title is "postgres: <user> <database> <client> <state>".
    marker = f" {database} "
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(entry.name)
        if stat is None:
            continue
        parent, seconds = stat
        if entry.name == str(root_pid) or parent == root_pid:
            service[entry.name] = seconds
        elif marker in _cmdline(entry.name) and _cmdline(entry.name).startswith("postgres:"):
            backends[entry.name] = seconds
    return CpuSample(service, backends)


def _spent(before: dict[str, float], after: dict[str, float]) -> float:
    # A process that appeared during the run counts from zero; one that exited is lost
    # (overflow connections closed on return), so the database figure is a floor.
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def spent(before: CpuSample, after: CpuSample) -> tuple[float, float]:
    """(service, database) CPU seconds between two samples."""
    return _spent(before.service, after.service), _spent(before.database, after.database)
