"""Runs the benchmark that scripts/bench.sh describes and prints a table of ratios."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from tests.support.database import fresh_database
from tests.support.otlp import otlp_receiver
from tests.support.service import REPO, free_port, running_service

PASSWORD = "benchmark password"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(name: str, url: str, duration: int, connections: int, headers: dict[str, str]) -> Result:
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    base = ["wrk", "-t2", f"-c{connections}", "--latency", *header_args, url]
    subprocess.run([*base[:3], "-d2s", *base[3:]], check=True, capture_output=True)  # warm-up
    out = subprocess.run(
        [*base[:3], f"-d{duration}s", *base[3:]], check=True, capture_output=True, text=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return Result(name, rps, p50, p99, non_2xx)


def _worker_rss_mb(master_pid: int) -> list[float]:
    """Resident memory of gunicorn's workers (the master's children), from /proc."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port-base", type=int, default=18100)
    args = parser.parse_args()
    database_url = fresh_database("user_service_bench")
    redis_url = "redis://127.0.0.1:6379/9"
    redis.Redis.from_url(redis_url).flushdb()
    common = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "5",
        "RATE_LIMIT_API": "100000000/minute",
        "RATE_LIMIT_LOGIN": "100000/minute",
    }
    results: list[Result] = []
    with ExitStack() as stack:
        receiver = stack.enter_context(otlp_receiver())
        instrumented = {
            **common,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
            "LOG_FORMAT": "json",
        }
        with running_service(instrumented) as service:
            client = httpx.Client(base_url=service.base_url)
            user = client.post(
                "/api/v1/users", json={"email": "bench@example.com", "password": PASSWORD}
            ).json()
            token = client.post(
                "/api/v1/auth/token", data={"username": "bench@example.com", "password": PASSWORD}
            ).json()["access_token"]
            path = f"/api/v1/users/{user['id']}"
            auth = {"Authorization": f"Bearer {token}"}
            payload = client.get(path, headers=auth).content
            redis.Redis.from_url(redis_url).set(f"bench:{user['id']}", payload)
            results.append(
                wrk(
                    "service cached, all on (sampling 0.1)",
                    service.base_url + path,
                    args.duration,
                    args.connections,
                    auth,
                )
            )
            worker_rss_mb = _worker_rss_mb(service.process.pid)
        configurations = [
            (
                "service cached, all on (sampling 1.0)",
                {**instrumented, "OTEL_TRACES_SAMPLER_ARG": "1.0"},
            ),
            (
                "service cached, instrumentation off",
                {
                    **common,
                    "OTEL_SDK_DISABLED": "true",
                    "METRICS_ENABLED": "false",
                    "LOG_LEVEL": "WARNING",
                },
            ),
            (
                "service cache off, all on (sampling 0.1)",
                {**instrumented, "CACHE_ENABLED": "false"},
            ),
        ]
        for name, env in configurations:
            with running_service(env) as service:
                results.append(
                    wrk(name, service.base_url + path, args.duration, args.connections, auth)
                )
        port = free_port()
        env = {**os.environ, **common, "PYTHONPATH": str(REPO)}
        log = Path(f"/tmp/bench-baselines-{port}.log")
        with log.open("wb") as sink:
            baseline = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("gunicorn")),
                    "-w",
                    "2",
                    "-k",
                    "uvicorn_worker.UvicornWorker",
                    "-b",
                    f"127.0.0.1:{port}",
                    "--no-control-socket",
                    "scripts.bench.baselines:app",
                ],
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            try:
                base_url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{base_url}/redis/{user['id']}").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.2)
                for name, route in (
                    ("bare FastAPI + raw asyncpg row", "asyncpg"),
                    ("bare FastAPI + one Redis GET", "redis"),
                    ("bare FastAPI + SQLAlchemy ORM get", "orm"),
                ):
                    results.append(
                        wrk(
                            name,
                            f"{base_url}/{route}/{user['id']}",
                            args.duration,
                            args.connections,
                            {},
                        )
                    )
            finally:
                baseline.terminate()
                baseline.wait(30)
    by_name = {r.name: r for r in results}
    print(f"\n{'configuration':45} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for r in results:
        print(f"{r.name:45} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.non_2xx:8d}")
    rps = {name: result.rps for name, result in by_name.items()}
    cached = rps["service cached, all on (sampling 0.1)"]
    cache_off = rps["service cache off, all on (sampling 0.1)"]
    ratios = [
        ("cached service / raw asyncpg", cached / rps["bare FastAPI + raw asyncpg row"], ">= 1.0"),
        ("cached service / one Redis GET", cached / rps["bare FastAPI + one Redis GET"], ">= 0.7"),
        (
            "cache-off service / ORM get",
            cache_off / rps["bare FastAPI + SQLAlchemy ORM get"],
            ">= 1.2",
        ),
        (
            "instrumentation on / off",
            cached / rps["service cached, instrumentation off"],
            ">= 0.85",
        ),
        ("sampling 1.0 / sampling 0.1", rps["service cached, all on (sampling 1.0)"] / cached, ""),
        ("cached / cache off", cached / cache_off, ""),
    ]
    print(
        "\nworker RSS after the cached run (MB): "
        + ", ".join(f"{size:.0f}" for size in worker_rss_mb)
        + "  (goal < 150 each)"
    )
    print("\nratios (one run):")
    for label, value, goal in ratios:
        print(f"  {label:36} {value:5.2f}  {('goal ' + goal) if goal else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
