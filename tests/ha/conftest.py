"""Fixtures of the high-availability tests: a stock pgbouncer in transaction mode in front of
the run's own database, and the in-process app pointed through it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from app.settings import Settings
from tests.conftest import AppHarness, start_harness
from tests.faults import report
from tests.ha.pgbouncer import PgBouncer
from tests.support.database import fresh_database

PGBOUNCER_DATABASE = "user_service_ha_pgbouncer"


@pytest.fixture(scope="session")
def database_url() -> str:
    """The database behind the pgbouncer, reached directly (as the CLI and checks do)."""
    return fresh_database(PGBOUNCER_DATABASE)


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
