"""Statements of one row, handed straight to asyncpg on a pooled connection.

SQLAlchemy's execute builds an execution context, a cursor result and row objects for every
statement, and an async read crosses into its greenlet three times (connect, execute, close).
On the hottest uncached read that costs more CPU than the driver's own work. Here the whole
read runs in one greenlet: a Connection is checked out as usual (pool wait and timeout,
pre-ping, checkout events and pool metrics), the compiled statement goes to asyncpg's
fetchrow, and what Connection.execute does around a statement is kept: the before and after
cursor events (statement metrics, the slow-query log, the client span) and, on failure, the
Connection's own error handling, which translates and wraps the driver's error, runs the
handle_error events and invalidates the connection (or the pool, on a disconnect). A failure
therefore reaches the caller as it would from execute, and maps onto the same 503/504.

Only a read engine in autocommit on asyncpg, without echo, takes this path: anything else
(SQLite, PgBouncer transaction mode, whose reads keep their transaction) runs the statement
through Connection.execute.

A write of one statement (`OneRowWrite`, an INSERT ... RETURNING) is its own transaction in
autocommit, as a read is; where the engine is not in autocommit it commits explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from sqlalchemy import Select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import UpdateBase
from sqlalchemy.util import await_only, greenlet_spawn

# The execution option create_read_engine sets on an engine whose reads may take this path.
DIRECT_READS: Final = "user_service_direct_reads"


class _Statement:
    """What a cursor event listener receives as the execution context: the attributes listeners
    attach to it (a start time, the client span) and the two an error handler reads."""

    executemany = False

    def handle_dbapi_exception(self, _error: BaseException) -> None:
        return None


class _OneRow:
    """A statement of at most one row, compiled once, with named bound parameters."""

    # Whether the statement commits itself where the engine is not in autocommit.
    _commits = False

    def __init__(self, engine: AsyncEngine, statement: Select[Any] | UpdateBase) -> None:
        self._engine = engine
        self._statement = statement
        compiled = statement.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ())
        dialect = engine.dialect
        self._direct = bool(
            dialect.driver == "asyncpg"
            and engine.get_execution_options().get(DIRECT_READS)
            and not engine.echo
        )
        # A listener that replaces the driver call itself needs execute's own path.
        self._replaced = dialect.dispatch.do_execute

    async def first(self, **params: Any) -> Mapping[str, Any] | None:
        """The row's columns by name, or None when no row matches."""
        if not self._direct or self._replaced:
            return await self._execute(params)
        values = tuple(params[name] for name in self._names)
        record: Mapping[str, Any] | None = await greenlet_spawn(self._read, values)
        return record

    async def _execute(self, params: dict[str, Any]) -> Mapping[str, Any] | None:
        opened = self._engine.begin() if self._commits else self._engine.connect()
        async with opened as connection:
            row = (await connection.execute(self._statement, params)).first()
        return None if row is None else cast(Mapping[str, Any], row._mapping)

    def _read(self, values: tuple[Any, ...]) -> Any:
        connection = self._engine.sync_engine.connect()
        try:
            return self._fetch(connection, values)
        finally:
            connection.close()

    def _fetch(self, connection: Connection, values: tuple[Any, ...]) -> Any:
        proxied = connection.connection
        cursor = proxied.cursor()
        statement, parameters = self._sql, values
        context = cast(Any, _Statement())
        dispatch = connection.dispatch
        evented = connection._has_events or connection.engine._has_events
        if evented:
            for before in dispatch.before_cursor_execute:
                statement, parameters = before(
                    connection, cursor, statement, parameters, context, False
                )
        try:
            try:
                driver: Any = proxied.driver_connection
                record = await_only(driver.fetchrow(statement, *parameters))
            except Exception as error:
                # The driver's error as the DBAPI adapter raises it from execute (always raises).
                proxied.dbapi_connection._handle_exception(error)  # type: ignore[union-attr]
            if evented:
                dispatch.after_cursor_execute(
                    connection, cursor, statement, parameters, context, False
                )
        except BaseException as error:
            # Wraps, runs handle_error, invalidates on a disconnect or cancellation; raises.
            connection._handle_dbapi_exception(error, statement, parameters, cursor, context)
        cursor.close()
        return record


class OneRowRead(_OneRow):
    """A SELECT of at most one row."""

    def __init__(self, engine: AsyncEngine, statement: Select[Any]) -> None:
        super().__init__(engine, statement)


class OneRowWrite(_OneRow):
    """An INSERT, UPDATE or DELETE of at most one row, with RETURNING, in one transaction."""

    # Outside autocommit (PgBouncer's transaction mode) the statement must commit itself.
    _commits = True

    def __init__(self, engine: AsyncEngine, statement: UpdateBase) -> None:
        super().__init__(engine, statement)
