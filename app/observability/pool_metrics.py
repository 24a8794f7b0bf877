"""Database pool and query metrics: checkout wait, timeouts, pool gauges, statement latency."""

from __future__ import annotations

import time
from typing import Any

import structlog
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, Pool

from app.observability.metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_CHECKOUT_TIMEOUTS,
    DB_POOL_CHECKOUT_WAIT,
    DB_POOL_MAX,
    DB_POOL_OVERFLOW,
    DB_POOL_SIZE,
    DB_QUERY_DURATION,
)
from app.settings import Settings

log = structlog.get_logger("app.db")

_OPERATIONS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})


class InstrumentedPool(AsyncAdaptedQueuePool):
    """The async queue pool, timing how long a checkout waits for a free connection.

    SQLAlchemy has no event for the wait itself, so this overrides the one method every
    checkout passes through. The time includes opening an overflow connection, which is
    part of what the request waited for. (_do_get recurses only on a rare race, which
    would record a second, near-zero sample.)
    """

    def _do_get(self) -> ConnectionPoolEntry:
        started = time.perf_counter()
        try:
            return super()._do_get()
        except exc.TimeoutError:
            DB_POOL_CHECKOUT_TIMEOUTS.inc()
            raise
        finally:
            DB_POOL_CHECKOUT_WAIT.observe(time.perf_counter() - started)


class _CheckedOut:
    """Connections checked out of this process's instrumented pools, in all and beyond each
    pool's size: a worker has one pool, but the gauges are the process's, and a process with
    two (tests, tools) must show both rather than whichever pool moved last. Kept as running
    totals, so a checkout costs the same however many pools there are."""

    def __init__(self) -> None:
        self.total = 0
        self.overflow = 0

    def publish(self) -> None:
        DB_POOL_CHECKED_OUT.set(self.total)
        DB_POOL_OVERFLOW.set(self.overflow)


_checked_out = _CheckedOut()


def instrument_pool(pool: Pool, settings: Settings) -> None:
    """Keep the pool gauges current on every checkout and checkin."""
    DB_POOL_SIZE.set(settings.db_pool_size)
    DB_POOL_MAX.set(settings.db_max_connections)
    if not isinstance(pool, AsyncAdaptedQueuePool):
        return

    # Counted here rather than read from pool.checkedout(): the checkin event fires before
    # the pool takes the connection back, so reading the pool there lags by one.
    in_use = 0
    size = settings.db_pool_size
    totals = _checked_out

    def _on_checkout(*_args: Any) -> None:
        nonlocal in_use
        in_use += 1
        totals.total += 1
        if in_use > size:
            totals.overflow += 1
        totals.publish()

    def _on_checkin(*_args: Any) -> None:
        nonlocal in_use
        if in_use == 0:  # a connection checked out before the listeners were added
            return
        if in_use > size:
            totals.overflow -= 1
        in_use -= 1
        totals.total -= 1
        totals.publish()

    event.listen(pool, "checkout", _on_checkout)
    event.listen(pool, "checkin", _on_checkin)
    totals.publish()


def _operation(statement: str) -> str:
    verb = statement.lstrip()[:6].upper()
    return verb if verb in _OPERATIONS else "OTHER"


def instrument_queries(engine: Engine, *, slow_query_ms: int) -> None:
    """Time each statement; log the slow ones with their text but never their parameters."""
    histograms = {op: DB_QUERY_DURATION.labels(operation=op) for op in (*_OPERATIONS, "OTHER")}

    @event.listens_for(engine, "before_cursor_execute")
    def _before(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        context._query_started = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        elapsed = time.perf_counter() - context._query_started
        histograms[_operation(statement)].observe(elapsed)
        if slow_query_ms and elapsed * 1000 >= slow_query_ms:
            log.warning(
                "slow_query",
                duration_ms=round(elapsed * 1000, 2),
                statement=" ".join(statement.split())[:500],
            )
