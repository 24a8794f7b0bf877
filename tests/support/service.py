"""Run the real service (`user-service serve`, gunicorn) on a free loopback port for a test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningService:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"service exited with {process.returncode}:\n{log.read_text()[-4000:]}"
            )
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.2)
    raise TimeoutError(f"service not ready after {timeout}s: {last}\n{log.read_text()[-4000:]}")


@contextmanager
def running_service(
    env: dict[str, str], workers: int = 2, ready_timeout: float = 60
) -> Iterator[RunningService]:
    """Start gunicorn with `env` layered over a clean test environment; SIGTERM it after."""
    port = free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="us-test-metrics-"))
    # Closed in the finally below, after the process that writes to it has stopped.
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix="us-test-", suffix=".log", delete=False
    )
    log_path = Path(log_file.name)
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))},
        "APP_ENV": "test",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FORMAT": "json",
        "ARGON2_MEMORY_KIB": "8192",
        "ARGON2_TIME_COST": "1",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=REPO,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service = RunningService(port, process, log_path, metrics_dir, full_env)
    try:
        wait_ready(service.base_url, process, ready_timeout, log_path)
        yield service
    finally:
        service.stop()
        log_file.close()
