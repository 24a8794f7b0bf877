"""The database connection pool: SQLAlchemy's async queue pool whose overflow connections
linger a few seconds after use instead of closing on their first return.

The queue pool keeps DB_POOL_SIZE connections and closes an overflow connection the moment it
comes back while the pool is full. Under a steady load just above the pool size that closes
and reopens connections all the time: each reopening costs PostgreSQL a new backend process
(and a TLS handshake), and the request that waits for it. Here an overflow connection that
comes back to a full pool waits as a spare; a checkout that finds the pool empty takes the
spare used last, and a spare unused for OVERFLOW_LINGER_SECONDS is closed. The limits do not
change: spares count against DB_MAX_OVERFLOW like any overflow connection.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Final

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import queue as sqla_queue

from app.observability.pool_metrics import InstrumentedPool

OVERFLOW_LINGER_SECONDS: Final = 5.0


class _LingeringOverflow(AsyncAdaptedQueuePool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.linger_seconds = OVERFLOW_LINGER_SECONDS
        # (returned at, record), oldest first; used last first.
        self._spares: deque[tuple[float, ConnectionPoolEntry]] = deque()

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        try:
            self._pool.put(record, False)
        except sqla_queue.Full:
            self._spares.append((time.monotonic(), record))
        self._close_idle_spares()

    def _do_get(self) -> ConnectionPoolEntry:
        self._close_idle_spares()
        if self._spares:
            try:
                # A persistent connection first: spares are what may go.
                record: ConnectionPoolEntry = self._pool.get(False)
            except sqla_queue.Empty:
                return self._spares.pop()[1]
            return record
        return super()._do_get()

    def _close_idle_spares(self) -> None:
        deadline = time.monotonic() - self.linger_seconds
        while self._spares and self._spares[0][0] < deadline:
            _, record = self._spares.popleft()
            try:
                record.close()
            finally:
                self._dec_overflow()

    def dispose(self) -> None:
        while self._spares:
            _, record = self._spares.popleft()
            record.close()
        super().dispose()

    def spare_count(self) -> int:
        return len(self._spares)


class ServicePool(InstrumentedPool, _LingeringOverflow):
    """The pool every worker's engine uses: checkout waits timed (InstrumentedPool) around
    the lingering overflow."""
