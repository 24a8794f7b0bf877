"""Per-run isolation: every test run gets its own database names and its own redis-server,
so two runs on one machine (or a developer's local data) never share or wipe state; and the
service's variables are removed from the environment, so the caller's shell never leaks in.

`TEST_RUN_ID` names the run (random unless given); `TEST_REDIS_PORT` is the port of the
run's redis-server, started by the top-level conftest unless the caller already set it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, MutableMapping

RUN_ID = os.environ.setdefault("TEST_RUN_ID", uuid.uuid4().hex[:8])


def database_name(base: str) -> str:
    """The run's own name for database `base` (PostgreSQL allows 63 bytes)."""
    suffix = f"_{RUN_ID}"
    if base.endswith(suffix):
        return base
    return f"{base[: 63 - len(suffix)]}{suffix}"


def redis_port() -> int:
    return int(os.environ.get("TEST_REDIS_PORT", "6379"))


def redis_url(db: int) -> str:
    """A Redis logical database on the run's own redis-server."""
    return f"redis://127.0.0.1:{redis_port()}/{db}"


# Read by the service outside Settings (gunicorn.conf.py, the CLI, OpenTelemetry, Prometheus).
_SERVICE_VARIABLES = (
    "BIND",
    "WEB_CONCURRENCY",
    "GUNICORN_CONFIG",
    "ADMIN_PASSWORD",
    "ALEMBIC_CONFIG",
    "PROMETHEUS_MULTIPROC_DIR",
)
_SERVICE_PREFIXES = ("OTEL_", "GUNICORN_", "K8S_")


def isolate_environment(
    environ: MutableMapping[str, str], settings_names: Iterable[str]
) -> list[str]:
    """Remove from `environ` every variable the service reads (the Settings' env names and
    the few read elsewhere), so a developer's shell or a CI runner's environment cannot
    change what the tests see; tests set what they need explicitly. Returns the names gone."""
    names = {name.upper() for name in settings_names} | set(_SERVICE_VARIABLES)
    removed = sorted(
        key for key in environ if key.upper() in names or key.upper().startswith(_SERVICE_PREFIXES)
    )
    for key in removed:
        del environ[key]
    return removed
