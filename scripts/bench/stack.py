"""The processes a benchmark run starts on 127.0.0.1 and stops by pid: its own redis-server,
its own database, gunicorn serving the service or the bare baselines, a server of fixed cost
per request, and an OTLP sink."""

from __future__ import annotations

import asyncio
import ctypes.util
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import httpx

from loadtests.local_service import free_port, free_ports
from scripts.bench import cores

REPO = Path(__file__).resolve().parents[2]
# The allocator the image preloads (the Dockerfile's LD_PRELOAD). Every server here runs on it,
# the bare baselines too, so the bench measures what the image runs. It matters most beside a
# login storm: glibc maps and unmaps each hash's Argon2 memory in the worker's address space.
ALLOCATOR = "libjemalloc.so.2"
ADMIN_DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent


def stop(process: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM by pid (gunicorn stops its own workers), SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free port: its command counters are the run's alone."""
    port = free_port()
    process = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {port} did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process, grace=5)


def _async_url(name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def database() -> Iterator[str]:
    """A database of this run's own, migrated by the service's own command, dropped after."""
    name = f"user_service_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = _async_url(name)
    try:
        subprocess.run(
            [str(BIN / "user-service"), "migrate"],
            cwd=REPO,
            env={**os.environ, "DATABASE_URL": url, "APP_ENV": "test"},
            check=True,
            capture_output=True,
            timeout=180,
        )
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    # The service's own /metrics (its METRICS_PORT); the bare endpoints serve none.
    metrics_url: str

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the master's children."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]


@functools.cache
def _library_found(soname: str) -> bool:
    """Whether the loader's cache holds `soname`: asked once per name, not per server started
    (find_library runs ldconfig)."""
    return ctypes.util.find_library(soname.removeprefix("lib").split(".so")[0]) == soname


def preloaded_allocator() -> dict[str, str]:
    """The environment that preloads the image's allocator; a clear error where it is missing,
    since the loader would only warn and run the servers on glibc's."""
    if not _library_found(ALLOCATOR):
        raise RuntimeError(
            f"{ALLOCATOR} not found: install Debian's libjemalloc2 (scripts/bench.sh does)"
        )
    return {"LD_PRELOAD": ALLOCATOR}


def _wait_ready(server: Server, ready_path: str, workers: int, timeout: float) -> None:
    """Until the server answers on `ready_path` and has its `workers`: gunicorn answers once
    one worker does, and forks the others a random fraction of a second apart, so a reading
    of the workers taken straight after the answer could miss some."""
    deadline = time.monotonic() + timeout
    process, log = server.process, server.log_path
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: see {log}")
        try:
            answered = httpx.get(server.base_url + ready_path, timeout=2).status_code == 200
        except httpx.HTTPError:
            answered = False
        if answered and len(server.worker_pids()) >= workers:
            return
        time.sleep(0.2)
    raise TimeoutError(f"server not ready with {workers} workers after {timeout}s: see {log}")


@contextmanager
def serving(
    command: list[str],
    env: dict[str, str],
    ready_path: str,
    log_dir: Path,
    label: str,
    ready_seconds: float = 60,
    workers: int = 0,
) -> Iterator[Server]:
    """Run `command` (gunicorn, or any server bound by $BIND or by the `{bind}` it holds)
    until the block ends; a gunicorn server is ready once all its `workers` run."""
    port, metrics_port = free_ports(2)
    metrics_dir = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))},
        "BIND": f"127.0.0.1:{port}",
        # The service's metrics port too: the default one may be taken by another server.
        "METRICS_PORT": str(metrics_port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONPATH": str(REPO),
        **preloaded_allocator(),
        **env,
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{label}.log"
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            [part.replace("{bind}", f"127.0.0.1:{port}") for part in command],
            cwd=REPO,
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(
        f"http://127.0.0.1:{port}", process, log_path, f"http://127.0.0.1:{metrics_port}"
    )
    try:
        _wait_ready(server, ready_path, workers, ready_seconds)
        yield server
    finally:
        stop(process)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def service(
    env: dict[str, str],
    log_dir: Path,
    label: str,
    wrapper: Sequence[str] = (),
    cpus: frozenset[int] | None = None,
) -> AbstractContextManager[Server]:
    """`user-service serve` (gunicorn, 2 workers) with `env`; on `cpus`, a worker for each;
    under a `wrapper` (callgrind, scripts/bench/instructions.py), one worker."""
    if not wrapper:
        command = [*cores.on(cpus), str(BIN / "user-service"), "serve"]
        if cpus is not None:
            env = {**env, "WEB_CONCURRENCY": str(len(cpus))}
        workers = int(env.get("WEB_CONCURRENCY", "2"))
        return serving(command, env, "/readyz", log_dir, label, workers=workers)
    command = [*wrapper, str(BIN / "user-service"), "serve"]
    # Under callgrind a request takes tens of milliseconds and start-up tens of seconds.
    counted = {**env, "WEB_CONCURRENCY": "1", "GUNICORN_TIMEOUT": "900"}
    return serving(command, counted, "/readyz", log_dir, label, ready_seconds=600, workers=1)


def baselines(
    env: dict[str, str], log_dir: Path, cpus: frozenset[int] | None = None
) -> AbstractContextManager[Server]:
    """The bare FastAPI endpoints under gunicorn with the same 2 uvicorn workers (on `cpus`,
    a worker for each)."""
    workers = 2 if cpus is None else len(cpus)
    command = [*cores.on(cpus), str(BIN / "gunicorn"), "-w", str(workers)]
    command += ["-k", "uvicorn_worker.UvicornWorker"]
    command += ["-b", "{bind}", "--no-control-socket", "scripts.bench.baselines:app"]
    return serving(command, env, "/ready", log_dir, "baselines", workers=workers)


@contextmanager
def steady_server(
    build_dir: Path, log_dir: Path, cpus: frozenset[int] | None = None
) -> Iterator[Server]:
    """scripts/bench/steady, built with the Go toolchain into `build_dir` and serving on `cpus`:
    every request costs the CPU work its work_us parameter asks for, and nothing varies."""
    binary = build_dir / "steady"
    subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=REPO / "scripts" / "bench" / "steady",
        check=True,
        capture_output=True,
        timeout=300,
    )
    command = [*cores.on(cpus), str(binary), "-listen", "{bind}"]
    with serving(command, {}, "/?work_us=0", log_dir, "steady", ready_seconds=30) as server:
        yield server


@contextmanager
def otlp_sink() -> Iterator[str]:
    """Accepts OTLP/HTTP exports and drops them: a collector that costs the machine next to
    nothing, so the sampled rows measure the service's share of tracing, not a collector's."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
