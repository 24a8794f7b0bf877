"""The API suite's user and token journeys, run again with the database behind a stock
pgbouncer in transaction mode (DB_PGBOUNCER=true); tests/ha/conftest.py does the pointing."""

from __future__ import annotations

from typing import Any

from tests.integration import test_auth, test_create_admin, test_users

# Every journey of those modules, collected here as well: a test added there runs here too.
globals().update(
    {
        name: getattr(module, name)
        for module in (test_users, test_auth, test_create_admin)
        for name in dir(module)
        if name.startswith("test_")
    }
)


def test_the_journeys_above_go_through_the_pgbouncer(session_harness: Any, pgbouncer: Any) -> None:
    url = session_harness.app.state.resources.engine.url
    assert (url.port, session_harness.app.state.settings.db_pgbouncer_transaction_mode) == (
        pgbouncer.port,
        True,
    )
