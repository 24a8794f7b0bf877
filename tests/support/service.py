"""Run the real service (`user-service serve`, gunicorn) on a free loopback port for a test:
the launcher of loadtests/local_service.py, with the settings every test service shares."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtests.local_service import REPO, free_port, free_ports, serving
from loadtests.local_service import LocalService as RunningService

__all__ = ["REPO", "RunningService", "free_port", "free_ports", "running_service"]

# A test service logs JSON (tests read it) and hashes cheaply (tests log in a lot).
TEST_SERVICE_ENV = {
    "APP_ENV": "test",
    "LOG_FORMAT": "json",
    "ARGON2_MEMORY_KIB": "8192",
    "ARGON2_TIME_COST": "1",
}


@contextmanager
def running_service(
    env: dict[str, str], workers: int = 2, ready_timeout: float = 60
) -> Iterator[RunningService]:
    """Start gunicorn with `env` layered over a clean test environment; SIGTERM it after."""
    log_dir = Path(tempfile.mkdtemp(prefix="us-test-"))
    # No tracing or metrics directory of the caller's: each service gets its own.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    settings = {**TEST_SERVICE_ENV, "WEB_CONCURRENCY": str(workers), **env}
    with serving(settings, log_dir / "service.log", ready_timeout, base_env=base) as service:
        yield service
    # Reached only when the caller's block ended without an error: a failure keeps the log
    # for whoever reads it, a clean run leaves nothing in the temporary directory.
    shutil.rmtree(log_dir, ignore_errors=True)
