"""What one benchmark row cost the machine: database transactions and Redis commands (from
the servers' own counters), and the gunicorn workers' CPU time, waits for a CPU and resident
memory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis

from scripts.bench.load import Load
from scripts.bench.stack import plain_dsn

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def cpu_us_per_request(pids: list[int], run: Callable[[], Load]) -> tuple[Load, float]:
    """`run`'s load and what these processes spent on each of its requests, in CPU
    microseconds."""
    used = cpu_seconds(pids)
    load = run()
    return load, (cpu_seconds(pids) - used) / max(1, load.requests) * 1e6


def run_queue_wait_seconds(pids: list[int]) -> float:
    """How long the main threads of these processes (a worker's event loop) were ready to run
    but waited for a CPU, from the scheduler's own account (/proc/PID/schedstat)."""
    return sum(int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) for pid in pids) / 1e9


def rss_mb(pids: list[int]) -> list[float]:
    sizes = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


async def _transactions(database_url: str) -> int:
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        value = await connection.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(value)
    finally:
        await connection.close()


def transactions(database_url: str) -> int:
    """Transactions PostgreSQL has counted in this database. A backend reports its counts
    at most once a second and when it exits, so read this after the server has stopped."""
    return asyncio.run(_transactions(database_url)) - 1  # this query's own transaction


def redis_commands(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("stats")
        return int(stats["total_commands_processed"])
    finally:
        client.close()


@dataclass
class Usage:
    """Counter deltas over one row's traffic (warm-up included, which is the same traffic)."""

    requests: int
    transactions: int
    redis_commands: int

    def per_request(self) -> tuple[float, float]:
        n = max(1, self.requests)
        return self.transactions / n, self.redis_commands / n
