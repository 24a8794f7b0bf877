"""One entry point for every pod of the chart's distributed load test (an Indexed Job).

    python -m loadtests.distributed --workers 2 --master-host HOST -- <gate arguments>

Pod 0 (JOB_COMPLETION_INDEX=0) is the master: it runs the gate with --expect-workers, so
the verdict comes from the master's aggregated stats. Every other pod is a Locust worker
that connects to it; the master hands the workers the seeded accounts.
"""

from __future__ import annotations

import argparse
import os
import sys

from loadtests.runner import LOCUSTFILE


def command(index: int, workers: int, master_host: str, port: int, gate: list[str]) -> list[str]:
    if index == 0:
        return [
            sys.executable,
            "-m",
            "loadtests.gate",
            *gate,
            "--expect-workers",
            str(workers),
            "--master-bind-port",
            str(port),
        ]
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(port),
        "--loglevel",
        "WARNING",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.distributed")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--master-host", required=True)
    parser.add_argument("--master-port", type=int, default=5557)
    parser.add_argument("gate", nargs=argparse.REMAINDER, help="-- then the gate's arguments")
    args = parser.parse_args(argv)
    gate = args.gate[1:] if args.gate[:1] == ["--"] else args.gate
    index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    argv_ = command(index, args.workers, args.master_host, args.master_port, gate)
    os.execv(argv_[0], argv_)


if __name__ == "__main__":
    main()
