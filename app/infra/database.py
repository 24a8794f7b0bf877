"""The async SQLAlchemy engine and session factory: one engine per worker process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool, StaticPool

from app.errors import (
    DependencyTimeoutError,
    DependencyUnavailableError,
    DomainError,
    InvalidInputError,
)
from app.infra import pgbouncer
from app.infra.embedded import require_embedded_extra
from app.infra.pool import ServicePool
from app.infra.pool_ping import ping_idle_connections
from app.infra.row_read import DIRECT_READS
from app.observability.metrics import DB_ERRORS
from app.observability.pool_metrics import instrument_pool, instrument_queries
from app.settings import Settings

EMBEDDED_DATABASE_PATH = Path(".data") / "user-service.sqlite3"
# A refusal at connect (PgBouncer, authentication, a standby) reaches the app as the driver's
# own error: SQLAlchemy wraps driver errors only once a connection exists.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def database_url(settings: Settings) -> str:
    """The configured URL, or the embedded SQLite file when none is configured."""
    return settings.database_dsn or f"sqlite+aiosqlite:///{EMBEDDED_DATABASE_PATH}"


def is_embedded(settings: Settings) -> bool:
    return database_url(settings).startswith("sqlite")


def _postgres_connect_args(settings: Settings) -> dict[str, Any]:
    server_settings = {"application_name": settings.db_application_name}
    if settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    args: dict[str, Any] = {
        # asyncpg takes its timeouts here, not through SQLAlchemy's pool settings.
        "timeout": settings.db_connect_timeout_seconds,
        # A client-side deadline on every statement (pre-ping included): statement_timeout
        # is enforced by the server, which never sees a query lost in a silent network.
        "command_timeout": settings.db_command_timeout_seconds,
        "server_settings": server_settings,
    }
    if settings.db_pgbouncer_transaction_mode:
        # statement_timeout is set per transaction instead (see _engine below).
        args["server_settings"] = pgbouncer.startup_settings(server_settings)
        args.update(pgbouncer.connect_args())
    return args


class DatabaseConnectError(ConnectionError):
    """Opening a connection to the database failed: in the network (refused, reset, no route,
    unknown host), or the server or pooler refused the session."""


def _name_connect_failures(engine: Engine) -> None:
    """An OSError while connecting is the database being unreachable; the same class raised
    anywhere else (a file, a socket of another client) is not. Marking it here, where it is
    certain, lets classify_database_error tell them apart. TimeoutError keeps its own meaning."""

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except TimeoutError:
            raise
        except OSError as error:
            raise DatabaseConnectError(str(error)) from error
        except DRIVER_ERRORS as error:
            # Refused at connect (PgBouncer, authentication, no writable host): the same
            # outage to every caller, which catches OSError, not the driver's classes.
            raise DatabaseConnectError(f"{type(error).__name__}: {error}") from error


def _engine(settings: Settings, url: str, **options: Any) -> AsyncEngine:
    engine = create_async_engine(
        make_url(url),
        connect_args=_postgres_connect_args(settings),
        # Parameters (emails, password hashes) never reach an error message or a log line.
        hide_parameters=True,
        **options,
    )
    _name_connect_failures(engine.sync_engine)
    if settings.db_pgbouncer_transaction_mode and settings.db_statement_timeout_ms:
        pgbouncer.enforce_statement_timeout(engine.sync_engine, settings.db_statement_timeout_ms)
    return engine


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    url = database_url(settings)
    if url.startswith("sqlite"):
        require_embedded_extra("aiosqlite", "DATABASE_URL")
        EMBEDDED_DATABASE_PATH.parent.mkdir(parents=True, exist_ok=True)
        return create_async_engine(
            url, poolclass=StaticPool, echo=settings.db_echo, hide_parameters=True
        )
    if not pooled:
        # Short-lived commands (migrate, create-admin) hold one connection at most.
        return _engine(settings, url, poolclass=NullPool)
    engine = _engine(
        settings,
        url,
        poolclass=ServicePool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        echo=settings.db_echo,
    )
    if settings.db_pool_pre_ping:
        ping_idle_connections(engine.sync_engine.pool)
    instrument_pool(engine.sync_engine.pool, settings)
    instrument_queries(engine.sync_engine, slow_query_ms=settings.db_slow_query_ms)
    return engine


def create_read_engine(engine: AsyncEngine, settings: Settings) -> AsyncEngine:
    """The engine's pool, for reads of one statement: in autocommit each is one round trip,
    where a transaction would add a BEGIN and a ROLLBACK. Behind PgBouncer with a statement
    timeout the deadline is set per transaction (SET LOCAL), so reads keep their transaction."""
    if settings.db_pgbouncer_transaction_mode and settings.db_statement_timeout_ms:
        return engine
    # Straight to the driver (see row_read), except behind PgBouncer's transaction mode,
    # where asyncpg's own statement handling is not the one configured for it.
    direct = not settings.db_pgbouncer_transaction_mode
    return engine.execution_options(isolation_level="AUTOCOMMIT", **{DIRECT_READS: direct})


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: handlers read attributes after commit without another query.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


# SQLSTATEs of a refused or lost connection: connection exception (08, also what PgBouncer
# answers its own refusals with), invalid authorization (28), unknown database (3D), too many
# connections and other resource limits (53), shutdown or start-up (57P), and a read-only
# transaction (25006: a standby answered, as during a failover).
_UNAVAILABLE_SQLSTATES = ("08", "28", "3D", "53", "57P", "25006")


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what SQLAlchemy wrapped, and what that was raised from: outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return seen


def _sqlstate(error: BaseException) -> str:
    for link in _chain(error):
        code = getattr(link, "sqlstate", None)
        if isinstance(code, str) and code:
            return code
    return ""


def database_error_cause(error: BaseException) -> str:
    """The innermost error's class and message, for the log and readiness (the server's or
    the pooler's own words; statement parameters are never part of them)."""
    root = _chain(error)[-1]
    message = str(root).splitlines()[0] if str(root) else ""
    return f"{type(root).__name__}: {message}"[:300] if message else type(root).__name__


def classify_database_error(error: BaseException) -> DomainError | None:
    """Map a failure to reach or use the database onto 503/504; None for anything else
    (a programming error stays a 500)."""
    if isinstance(error, sa_exc.TimeoutError):
        DB_ERRORS.labels(kind="timeout").inc()
        return DependencyUnavailableError(
            "No database connection became free in time; retry shortly.", retry_after_seconds=1
        )
    original = getattr(error, "orig", None)
    if type(original).__name__ == "QueryCanceledError" or "canceling statement" in str(original):
        DB_ERRORS.labels(kind="statement_timeout").inc()
        return DependencyTimeoutError("The database did not answer within the statement timeout.")
    if _sqlstate(error).startswith(_UNAVAILABLE_SQLSTATES) or any(
        # A multi-host URL whose hosts all answered, none of them writable: mid-failover.
        isinstance(link, asyncpg.TargetServerAttributeNotMatched)
        for link in _chain(error)
    ):
        DB_ERRORS.labels(kind="unavailable").inc()
        return DependencyUnavailableError("The database is unreachable; retry shortly.")
    if isinstance(error, sa_exc.DataError):
        return InvalidInputError("A value in the request cannot be stored.")
    if isinstance(original, TimeoutError):
        DB_ERRORS.labels(kind="statement_timeout").inc()
        return DependencyTimeoutError("The database did not answer in time.")
    if isinstance(error, sa_exc.DBAPIError) and (
        error.connection_invalidated
        or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
        or isinstance(original, ConnectionError)
    ):
        DB_ERRORS.labels(kind="unavailable").inc()
        return DependencyUnavailableError("The database is unreachable; retry shortly.")
    if isinstance(error, TimeoutError):
        DB_ERRORS.labels(kind="statement_timeout").inc()
        return DependencyTimeoutError("The database did not answer in time.")
    if isinstance(error, ConnectionError):
        # Failed connects (see _name_connect_failures) and connections the server dropped;
        # any other OSError is no database outage and stays a 500.
        DB_ERRORS.labels(kind="unavailable").inc()
        return DependencyUnavailableError("The database is unreachable; retry shortly.")
    return None
