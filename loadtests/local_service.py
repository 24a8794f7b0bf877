"""Start user-service locally for a load run: a fresh database, gunicorn on 127.0.0.1, stop by pid.

Used by the sweep and by the gate when no --host is given. The settings it adds on top of
the caller's are the ones a load test on one machine needs and a deployment must not copy:
login and API rate limits raised (every Locust user shares 127.0.0.1) and, when asked, a
cheaper Argon2 so seeding and the rare logins do not eat the CPU the run is measuring.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loadtests.seed import SeedError, wait_ready

REPO = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("LOADTEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# Applied to every locally started service; each is reported in the run's metadata.
LOAD_TEST_ENV: dict[str, str] = {
    "APP_ENV": "test",
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_API": "1000000/minute",
    "LOG_LEVEL": "WARNING",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.1",
}
# Cheaper password hashing (RFC 9106's parameters cost ~64 MiB and most of a core per hash).
CHEAP_ARGON2_ENV: dict[str, str] = {"ARGON2_MEMORY_KIB": "8192", "ARGON2_TIME_COST": "1"}


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def install_stop_handlers() -> None:
    """Turn SIGTERM (and SIGINT, which a shell ignores for background jobs) into SystemExit,
    so `finally` blocks stop the service and Locust by pid instead of orphaning them."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)


def _command() -> str:
    return shutil.which("user-service") or str(Path(sys.executable).parent / "user-service")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def _recreate(name: str) -> None:
    import asyncpg  # type: ignore[import-untyped]  # only the launcher needs it

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _count_connections(name: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
        )
        return int(value)
    finally:
        await conn.close()


def count_connections(name: str) -> int:
    """Server-side connections open to the database now (the pool's real footprint)."""
    return asyncio.run(_count_connections(name))


def fresh_database(name: str) -> str:
    """Drop and recreate `name`, migrate it with the service's own command, return its URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    asyncio.run(_recreate(name))
    url = database_url(name)
    result = subprocess.run(
        [_command(), "migrate"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url, "APP_ENV": "test"},
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if result.returncode != 0:
        raise SeedError(f"migrate failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return url


@dataclass
class LocalService:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]


def stop(process: subprocess.Popen[bytes], grace: float = 25.0) -> None:
    """SIGTERM the gunicorn master by pid (it stops its workers), SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def running(
    env: dict[str, str], log_dir: Path, ready_timeout: float = 90.0
) -> Iterator[LocalService]:
    """Run `user-service serve` with `env` on a free loopback port until the block ends."""
    port = free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="loadtest-prom-"))
    full_env = {
        **os.environ,
        **LOAD_TEST_ENV,
        **env,
        "BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "service.log"
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [_command(), "serve"], cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise SeedError(f"service exited with {process.returncode}; see {log_path}")
            try:
                wait_ready(base_url, timeout=2.0)
                break
            except SeedError:
                if time.monotonic() > deadline:
                    raise
        yield LocalService(base_url, process, log_path, full_env)
    finally:
        stop(process)
        shutil.rmtree(metrics_dir, ignore_errors=True)
