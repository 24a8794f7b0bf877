"""Start user-service locally: a fresh database, gunicorn on a free loopback port, stop by pid.

Used by the sweep and by the gate when no --host is given, by the benchmark and by the tests
(which add their own settings in tests/support). The settings it adds on top of
the caller's are the ones a load test on one machine needs and a deployment must not copy:
login and API rate limits raised (every Locust user shares 127.0.0.1) and, when asked, a
cheaper Argon2 so seeding and the rare logins do not eat the CPU the run is measuring.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
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


def free_port() -> int:
    """A loopback port nobody listens on now (every local server started here uses one)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nobody listens on now. All are held until all are
    chosen: asked for one at a time, a port just let go may come back for the next (a
    benchmark's server once got its metrics port equal to its own and refused to start)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def database_url(name: str, admin_dsn: str = ADMIN_DSN) -> str:
    """The service's URL of database `name` on the server `admin_dsn` points at."""
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def _admin(admin_dsn: str, *statements: tuple[str, ...]) -> list[object]:
    import asyncpg  # type: ignore[import-untyped]  # only the launcher needs it

    connection = await asyncpg.connect(admin_dsn)
    try:
        return [await connection.fetchval(*statement) for statement in statements]
    finally:
        await connection.close()


def _checked(name: str) -> str:
    # Names are interpolated into DROP/CREATE DATABASE: letters, digits and _ only.
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    return name


def create_database(name: str, admin_dsn: str = ADMIN_DSN) -> str:
    """Drop `name` (closing its connections) and create it empty; return its URL."""
    name = _checked(name)
    asyncio.run(
        _admin(
            admin_dsn,
            (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',),
            (f'CREATE DATABASE "{name}"',),
        )
    )
    return database_url(name, admin_dsn)


def drop_database(name: str, admin_dsn: str = ADMIN_DSN) -> None:
    name = _checked(name)
    asyncio.run(_admin(admin_dsn, (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',)))


def migrate(url: str) -> None:
    """Run the service's own `migrate` command (as the chart's Job does) against `url`."""
    result = subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url, "APP_ENV": "test"},
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if result.returncode != 0:
        raise SeedError(f"migrate failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def fresh_database(name: str, admin_dsn: str = ADMIN_DSN) -> str:
    """Drop and recreate `name`, migrate it to head, return its URL."""
    url = create_database(name, admin_dsn)
    migrate(url)
    return url


def count_connections(name: str, admin_dsn: str = ADMIN_DSN) -> int:
    """Server-side connections open to the database now (the pool's real footprint)."""
    query = ("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)
    (value,) = asyncio.run(_admin(admin_dsn, query))
    return int(str(value))


class ServiceStartError(SeedError):
    """The service exited, or did not become ready, while starting."""


@dataclass
class LocalService:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    metrics_dir: Path

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def logs_with(self, text: str, timeout: float = 10.0) -> str:
        """The log's whole lines once one of them holds `text`.

        A worker writes a request's access line after the response has gone out (its lines
        go out together at the next turn of its event loop), so a caller that has just read a
        response waits for the line it needs instead of racing the worker for it. A line can
        reach the file in more than one write, and two workers share it: the log is returned
        up to its last newline, once the line holding `text` has its own.
        """
        deadline = time.monotonic() + timeout
        while True:
            logs = self.logs()
            found = logs.find(text)
            if found >= 0 and "\n" in logs[found:]:
                return logs[: logs.rindex("\n") + 1]
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{text!r} not in {self.log_path} after {timeout:g} s; it ends:\n{logs[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self, grace: float = 25.0) -> int | None:
        stop(self.process, grace)
        return self.process.returncode

    @property
    def metrics_port(self) -> int:
        """Where /metrics is served: never the public port."""
        return int(self.env["METRICS_PORT"])

    @property
    def metrics_base_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.metrics_base_url}/metrics"


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


def _wait_until_ready(service: LocalService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if service.process.poll() is not None:
            raise ServiceStartError(
                f"service exited with {service.process.returncode}; {service.log_path} ends:\n"
                f"{service.logs()[-4000:]}"
            )
        try:
            wait_ready(service.base_url, timeout=2.0)
            return
        except SeedError as error:
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"{error}; {service.log_path} ends:\n{service.logs()[-4000:]}"
                ) from error


@contextmanager
def serving(
    env: Mapping[str, str],
    log_path: Path,
    ready_timeout: float = 90.0,
    base_env: Mapping[str, str] | None = None,
) -> Iterator[LocalService]:
    """Run `user-service serve` (gunicorn) with `env` over `base_env` (default: this process's
    environment) on a free loopback port, until the block ends; then SIGTERM it by pid."""
    port = free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="user-service-prom-"))
    full_env = {
        **(os.environ if base_env is None else base_env),
        **env,
        "BIND": f"127.0.0.1:{port}",
        "METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C meant for the caller reaches gunicorn only through
            # the caller's clean-up, which stops it by pid.
            start_new_session=True,
        )
    service = LocalService(f"http://127.0.0.1:{port}", process, log_path, full_env, metrics_dir)
    try:
        _wait_until_ready(service, ready_timeout)
        yield service
    finally:
        stop(process)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def running(
    env: dict[str, str], log_dir: Path, ready_timeout: float = 90.0
) -> AbstractContextManager[LocalService]:
    """The service for a load run: LOAD_TEST_ENV under `env`, its log in `log_dir`."""
    return serving({**LOAD_TEST_ENV, **env}, log_dir / "service.log", ready_timeout)
