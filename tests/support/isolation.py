"""Per-run isolation: every test run gets its own database names and its own redis-server,
so two runs on one machine (or a developer's local data) never share or wipe state.

`TEST_RUN_ID` names the run (random unless given); `TEST_REDIS_PORT` is the port of the
run's redis-server, started by the top-level conftest unless the caller already set it.
"""

from __future__ import annotations

import os
import uuid

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
