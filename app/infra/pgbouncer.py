"""PgBouncer transaction mode: what the engine may send at startup, and the statement deadline
set per transaction instead of per connection."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# The startup parameters every PgBouncer tracks itself (its stock configuration refuses any
# other one, statement_timeout included, unless listed in ignore_startup_parameters).
TRACKED_STARTUP_PARAMETERS = frozenset(
    {"client_encoding", "datestyle", "timezone", "standard_conforming_strings", "application_name"}
)


def startup_settings(server_settings: dict[str, str]) -> dict[str, str]:
    """The subset of `server_settings` a stock PgBouncer accepts at startup."""
    return {k: v for k, v in server_settings.items() if k.lower() in TRACKED_STARTUP_PARAMETERS}


def statement_name() -> str:
    # asyncpg numbers its statements per process; two workers behind one PgBouncer would
    # then reuse a name on a server connection the other one prepared it on.
    return f"__us_{uuid.uuid4().hex}__"


def connect_args() -> dict[str, Any]:
    """Transaction mode hands each transaction a different server connection: no prepared
    statement may outlive its transaction, and none may collide by name."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": statement_name,
    }


def enforce_statement_timeout(engine: Engine, timeout_ms: int) -> None:
    """Run every transaction under `statement_timeout`: SET LOCAL lasts exactly one
    transaction, which is all PgBouncer lends a connection for. One extra statement per
    transaction; an operator who sets it on the role instead can turn it off with
    DB_STATEMENT_TIMEOUT_MS=0."""
    statement = f"SET LOCAL statement_timeout = {int(timeout_ms)}"

    @event.listens_for(engine, "begin")
    def _set_deadline(connection: Connection) -> None:
        connection.exec_driver_sql(statement)
