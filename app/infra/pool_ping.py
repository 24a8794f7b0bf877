"""Pre-ping of pooled database connections that sat idle: recovery after a restart or failover
without a round trip on every checkout.

SQLAlchemy's own pre-ping tests every checkout (with asyncpg a transaction of three round
trips). A connection that went back to the pool moments ago has just answered a statement:
testing it again costs a busy worker a transaction per request and proves nothing new. So
only a connection idle for longer than a short window is tested, as HikariCP does with its
500 ms alive-bypass window. A connection that dies within the window fails its one statement
(a 503), and that disconnect invalidates every older connection of the pool at once.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sqlalchemy import event, exc
from sqlalchemy.pool import ConnectionPoolEntry, Pool

# Seconds a returned connection is trusted without a test.
ALIVE_BYPASS_SECONDS: Final = 0.5
_IDLE_SINCE: Final = "user_service_idle_since"


def ping_idle_connections(pool: Pool, *, bypass_seconds: float = ALIVE_BYPASS_SECONDS) -> None:
    """Test a connection on checkout when it has been idle longer than `bypass_seconds`; a
    failed test replaces it, and a disconnect replaces every connection pooled before it."""
    dialect = pool._dialect

    @event.listens_for(pool, "checkin")
    def _returned(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # The record's info is cleared whenever its connection is replaced: a connection
        # never returned is a fresh one, which needs no test.
        if record.dbapi_connection is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since <= bypass_seconds:
            return
        if not dialect._do_ping_w_event(dbapi_connection):
            # The pool retries the checkout with a new connection, as its own pre-ping does.
            raise exc.InvalidatePoolError()
