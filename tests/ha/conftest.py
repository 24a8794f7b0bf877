"""Fixtures of the high-availability tests: a stock pgbouncer in transaction mode in front of
the run's own database, and the in-process app pointed through it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from app.settings import Settings
from tests.conftest import DATABASE_NAME
from tests.faults import report
from tests.ha.pgbouncer import PgBouncer
from tests.support.app_harness import AppHarness, start_harness

# The pgbouncer fronts the run's own test database. Not a database of its own behind an
# overridden `database_url`: the session-scoped fixtures that depend on `database_url`
# would keep whichever one they were first built with for the rest of the run.
PGBOUNCER_DATABASE = DATABASE_NAME


@pytest.fixture(scope="session")
def pgbouncer(database_url: str) -> Iterator[PgBouncer]:
    with PgBouncer([PGBOUNCER_DATABASE]).running() as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def settings_factory(
    settings_factory: Callable[..., Settings], pgbouncer: PgBouncer
) -> Callable[..., Settings]:
    """Every app these tests build reaches PostgreSQL through the pgbouncer, in PgBouncer mode."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "DATABASE_URL": pgbouncer.url(PGBOUNCER_DATABASE),
            "DB_PGBOUNCER": True,
        }
        values.update(overrides)
        return settings_factory(**values)

    return make


@pytest.fixture(scope="session")
async def session_harness(settings_factory: Callable[..., Settings]) -> AsyncIterator[AppHarness]:
    harness, stop = await start_harness(settings_factory())
    yield harness
    await stop()


@pytest.fixture
def fault_report() -> Callable[..., None]:
    """Each failover adds a row to the fault table the run prints at its end."""
    return report.record
