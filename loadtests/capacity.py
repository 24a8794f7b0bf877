"""How many requests/second one Locust process can drive here: the load generator's own limit.

    python -m loadtests.capacity --host http://127.0.0.1:8000 --users 50 --duration 15s

Runs FastHttpUser with no think time against the cheapest endpoint (/livez), measures the
CPU the Locust process used, and reports req/s per core of Locust CPU: the ceiling one
process can reach when the target is not the bottleneck. On a shared machine the target and
Locust compete for cores, so the measured req/s is a floor and the per-core figure the limit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtests.locust_csv import read_stats

_LOCUSTFILE = """
from locust import FastHttpUser, constant, task

class Probe(FastHttpUser):
    wait_time = constant(0)

    @task
    def livez(self):
        self.client.get("/livez")
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.capacity")
    p.add_argument("--host", required=True)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--duration", default="15s")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loadtest-capacity-") as tmp:
        locustfile = Path(tmp) / "probe.py"
        locustfile.write_text(_LOCUSTFILE)
        command = [
            sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
            "--host", args.host, "--users", str(args.users), "--spawn-rate", str(args.users),
            "--run-time", args.duration, "--csv", f"{tmp}/probe", "--only-summary",
            "--loglevel", "ERROR", "--exit-code-on-error", "0",
        ]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu = 0.0
        while process.poll() is None:
            # Sample until exit: /proc/<pid> disappears once it is reaped.
            try:
                cpu = _cpu_seconds(process.pid)
            except OSError:
                break
            time.sleep(0.2)
        process.wait()
        wall = time.monotonic() - started
        stats = read_stats(Path(f"{tmp}/probe_stats.csv"))
    share = cpu / wall if wall else 0.0
    per_core = stats.total.rps / share if share else 0.0
    print(
        f"{stats.total.rps:.0f} req/s with {args.users} users; Locust used {share:.0%} of one "
        f"core ({cpu:.1f}s CPU over {wall:.1f}s wall); about {per_core:.0f} req/s per core "
        f"of Locust CPU; p95 {stats.total.p95_ms:.0f} ms; {stats.total.failures} failures"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
