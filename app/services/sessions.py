"""Sessions in PostgreSQL, the source of truth: opened by login, rotated by refresh, revoked by
logout, password change, deactivation, deletion, role change and the sessions API. Every
revocation commits first; the Redis cache follows (see app/infra/session_cache.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from sqlalchemy import (
    ColumnElement,
    DateTime,
    String,
    Uuid,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.errors import AuthenticationError, NotFoundError
from app.infra.background import cancel_and_wait
from app.infra.row_read import OneRowRead, OneRowWrite
from app.infra.session_cache import SessionCache
from app.infra.session_state import SessionStateReader
from app.models import SessionCacheBacklog, User, UserSession
from app.observability.metrics import SESSIONS_ACTIVE, record_auth
from app.schemas.auth import TokenPair
from app.schemas.session import SessionRead
from app.services.tokens import SessionGrant, TokenService, refresh_hash, token_id
from app.settings import Settings

log = structlog.get_logger("app.sessions")
security_log = structlog.get_logger("app.security")

# Clocks of the replicas and of Redis may disagree this much (seconds).
_CLOCK_MARGIN: Final = 0.5
_BACKLOG_BATCH: Final = 1000
_BAD_CREDENTIALS: Final = "Incorrect email or password."
_REVOKED: Final = "The refresh token has been revoked."


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who is asking, as seen through the trusted proxies."""

    user_agent: str | None = None
    address: str | None = None


def _aware(moment: datetime) -> datetime:
    # SQLite (embedded development mode) hands timestamps back without their zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _grant(row: UserSession, *, is_admin: bool) -> SessionGrant:
    return SessionGrant(
        session_id=row.id,
        user_id=row.user_id,
        is_admin=is_admin,
        generation=row.generation,
        issued_at=int(_aware(row.rotated_at).timestamp()),
        refresh_expires_at=int(_aware(row.expires_at).timestamp()),
    )


# A login's new session, in one statement. The user is read FOR SHARE in the CTE, which
# gives the row as it is once any update in flight has committed, so `is_admin` is the one the
# session is created under; the session is inserted only if the user is active and still has
# the hash the password was verified against.
_LOCKED_ACCOUNT: Final = (
    select(User.id, User.is_admin)
    .where(
        User.id == bindparam("user_id", type_=Uuid),
        User.is_active,
        User.password_hash == bindparam("verified_hash", type_=String),
    )
    .with_for_update(read=True)
    .cte("account")
)
_NOW: Final = bindparam("now", type_=DateTime(timezone=True))
_OPEN: Final = (
    insert(UserSession)
    .from_select(
        [
            UserSession.id,
            UserSession.user_id,
            UserSession.created_at,
            UserSession.last_used_at,
            UserSession.rotated_at,
            UserSession.expires_at,
            UserSession.generation,
            UserSession.refresh_hash,
            UserSession.user_agent,
            UserSession.client_address,
        ],
        select(
            bindparam("session_id", type_=Uuid),
            _LOCKED_ACCOUNT.c.id,
            _NOW,
            _NOW,
            _NOW,
            bindparam("expires_at", type_=DateTime(timezone=True)),
            literal_column("0"),
            bindparam("refresh_hash", type_=String),
            bindparam("user_agent", type_=String),
            bindparam("client_address", type_=String),
        ),
    )
    .returning(select(_LOCKED_ACCOUNT.c.is_admin).scalar_subquery().label("is_admin"))
)
# The upkeep's two reads, a few times a second on every worker: each one round trip on the
# one-row path, so the event loop never spends most of a millisecond on an ORM session for
# them while it serves requests.
_BACKLOG_PENDING: Final = select(exists(select(SessionCacheBacklog.session_id)).label("pending"))
_ACTIVE_COUNT: Final = select(func.count().label("active")).where(
    UserSession.revoked_at.is_(None), UserSession.expires_at > _NOW
)


class SessionService:
    """Stateless and shared by all requests of a worker, like UserService."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        single_statements: AsyncEngine,
        tokens: TokenService,
        cache: SessionCache,
        state: SessionStateReader,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        # Single statements in autocommit (see create_read_engine).
        self._open = OneRowWrite(single_statements, _OPEN)
        self._backlog_pending = OneRowRead(single_statements, _BACKLOG_PENDING)
        self._active_count = OneRowRead(single_statements, _ACTIVE_COUNT)
        self._tokens = tokens
        self._cache = cache
        self._state = state
        self._grace = timedelta(seconds=settings.refresh_reuse_grace_seconds)
        self._refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_seconds)

    # ------------------------------------------------------------------ login and refresh

    async def open(self, user_id: uuid.UUID, verified_hash: str, client: ClientInfo) -> TokenPair:
        """A new session for a user whose password matched `verified_hash`.

        One statement (see `_OPEN`), its own transaction: it inserts the session only while
        the user is active and still has that hash, reading the user FOR SHARE. A password
        change, deactivation or role change in flight either commits first (and this login
        sees it) or waits for this session to exist (and revokes it)."""
        now = datetime.now(UTC)
        session_id = uuid.uuid4()
        expires_at = now + self._refresh_ttl
        opened = await self._open.first(
            user_id=user_id,
            verified_hash=verified_hash,
            session_id=session_id,
            now=now,
            expires_at=expires_at,
            refresh_hash=refresh_hash(token_id("refresh", session_id, 0)),
            user_agent=(client.user_agent or None) and client.user_agent[:512],
            client_address=client.address,
        )
        if opened is None:
            record_auth("login_failure")
            raise AuthenticationError(_BAD_CREDENTIALS)
        pair = self._tokens.pair_for(
            SessionGrant(
                session_id=session_id,
                user_id=user_id,
                is_admin=bool(opened["is_admin"]),
                generation=0,
                issued_at=int(now.timestamp()),
                refresh_expires_at=int(expires_at.timestamp()),
            )
        )
        await self._cache.refill(session_id, active=True)
        return pair

    async def refresh(self, token: str, client: ClientInfo) -> TokenPair:
        """Rotate the session's refresh token. The previous token, presented again within
        the grace window by the same client, gets the same new pair (two tabs refreshing at
        once); any other replay revokes the session."""
        claims = self._tokens.decode(token, "refresh")
        presented = refresh_hash(claims.jti)
        query = (
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.id == claims.session_id)
            .with_for_update(of=UserSession)
        )
        async with self._sessions() as db:
            found = (await db.execute(query)).one_or_none()
            now = datetime.now(UTC)
            if found is None:
                record_auth("refresh_failure")
                raise AuthenticationError(_REVOKED)
            row, user = found
            if (
                row.revoked_at is not None
                or _aware(row.expires_at) <= now
                or row.user_id != claims.subject
                or not user.is_active
            ):
                record_auth("refresh_failure")
                raise AuthenticationError(_REVOKED)
            if presented == row.refresh_hash:
                row.generation += 1
                row.previous_refresh_hash = presented
                row.rotated_at = row.last_used_at = now
                row.expires_at = now + self._refresh_ttl
                row.refresh_hash = refresh_hash(token_id("refresh", row.id, row.generation))
                pair = self._tokens.pair_for(_grant(row, is_admin=user.is_admin))
                await db.commit()
                record_auth("refresh_success")
                return pair
            if (
                presented == row.previous_refresh_hash
                and now - _aware(row.rotated_at) <= self._grace
                and (row.user_agent or "") == (client.user_agent or "")[:512]
            ):
                record_auth("refresh_grace")
                return self._tokens.pair_for(_grant(row, is_admin=user.is_admin))
            revoked = await self.revoke_in(db, UserSession.id == row.id, "refresh_reuse")
            await db.commit()
        record_auth("refresh_reuse")
        security_log.warning(
            "refresh_token_reuse",
            security_event=True,
            session_id=str(row.id),
            user_id=str(row.user_id),
            client=client.address,
        )
        await self.after_commit(revoked)
        raise AuthenticationError(
            "This refresh token was already used; its session is now revoked."
        )

    # ------------------------------------------------------------------ revocation

    async def revoke_in(
        self, db: AsyncSession, where: ColumnElement[bool], reason: str
    ) -> list[uuid.UUID]:
        """Revoke the live sessions matching `where` inside the caller's transaction, with a
        backlog row each; call `after_commit` with the result once it has committed."""
        now = datetime.now(UTC)
        result = await db.execute(
            update(UserSession)
            .where(where, UserSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .returning(UserSession.id)
        )
        revoked = list(result.scalars())
        if revoked:
            await db.execute(
                insert(SessionCacheBacklog),
                [{"session_id": session_id, "revoked_at": now} for session_id in revoked],
            )
        return revoked

    def of_user(self, user_id: uuid.UUID, *, keep: uuid.UUID | None = None) -> ColumnElement[bool]:
        where = UserSession.user_id == user_id
        return where if keep is None else (where & (UserSession.id != keep))

    async def after_commit(self, revoked: Sequence[uuid.UUID]) -> None:
        """Make committed revocations hold in the cache before the caller answers."""
        if not revoked:
            return
        for session_id in revoked:
            self._state.remember_revoked(session_id)
        if await self._cache.tombstone(revoked):
            try:
                async with self._sessions() as db:
                    await db.execute(
                        delete(SessionCacheBacklog).where(
                            SessionCacheBacklog.session_id.in_(revoked)
                        )
                    )
                    await db.commit()
            except (SQLAlchemyError, OSError):
                return  # the lease keeper clears it on its next round
            return
        # Redis did not confirm the tombstones. Any lease granted before this commit ends
        # within one lease period, and none is granted while the backlog holds these rows:
        # once that period is over, no worker trusts a cached "active" for these sessions.
        await asyncio.sleep(self._cache.lease_seconds + _CLOCK_MARGIN)

    async def revoke_sessions(
        self, user_id: uuid.UUID, session_ids: set[uuid.UUID] | None, reason: str
    ) -> list[uuid.UUID]:
        """Revoke these sessions of the user (None: all of them), answering once they hold."""
        where = self.of_user(user_id)
        if session_ids is not None:
            where = where & UserSession.id.in_(session_ids)
        async with self._sessions() as db:
            revoked = await self.revoke_in(db, where, reason)
            await db.commit()
        await self.after_commit(revoked)
        return revoked

    async def revoke_one(self, user_id: uuid.UUID, session_id: uuid.UUID, reason: str) -> None:
        """Revoke one of the user's sessions; 404 when the user has no such session."""
        async with self._sessions() as db:
            owner = await db.scalar(select(UserSession.user_id).where(UserSession.id == session_id))
            if owner != user_id:
                raise NotFoundError(f"Session {session_id} does not exist.")
            revoked = await self.revoke_in(db, UserSession.id == session_id, reason)
            await db.commit()
        await self.after_commit(revoked)

    # ------------------------------------------------------------------ reading

    async def list_for(self, user_id: uuid.UUID, current: uuid.UUID) -> list[SessionRead]:
        query = (
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > datetime.now(UTC),
            )
            .order_by(UserSession.last_used_at.desc(), UserSession.id)
        )
        async with self._sessions() as db:
            rows = list((await db.scalars(query)).all())
        return [
            SessionRead(
                id=row.id,
                created_at=_aware(row.created_at),
                last_used_at=_aware(row.last_used_at),
                user_agent=row.user_agent,
                client_address=row.client_address,
                current=row.id == current,
            )
            for row in rows
        ]

    # ------------------------------------------------------------------ upkeep

    async def sync_cache(self) -> bool:
        """Write the backlog's tombstones, then renew the cache lease; False when the lease
        was not renewed (Redis unavailable, or backlog left)."""
        deadline = self._cache.lease_deadline()  # before looking: see SessionCache
        looked = await self._backlog_pending.first()
        if looked is not None and looked["pending"] and not await self._write_backlog():
            return False
        return await self._cache.renew_lease(deadline)

    async def _write_backlog(self) -> bool:
        """Tombstone one batch of the backlog and clear it; True once the backlog is empty."""
        async with self._sessions() as db:
            pending = list(
                (
                    await db.scalars(select(SessionCacheBacklog.session_id).limit(_BACKLOG_BATCH))
                ).all()
            )
        if not pending:
            return True
        if not await self._cache.tombstone(pending):
            return False
        async with self._sessions() as db:
            await db.execute(
                delete(SessionCacheBacklog).where(SessionCacheBacklog.session_id.in_(pending))
            )
            await db.commit()
        return len(pending) < _BACKLOG_BATCH

    async def keep_lease(self) -> bool:
        return await self._cache.renew_lease(self._cache.lease_deadline())

    async def count_active(self) -> int:
        counted = await self._active_count.first(now=datetime.now(UTC))
        return 0 if counted is None else int(counted["active"])


async def purge_expired_sessions(
    sessions: async_sessionmaker[AsyncSession], *, batch_size: int, retain: timedelta
) -> int:
    """Delete sessions expired or revoked longer than `retain` ago, `batch_size` rows per
    transaction so no lock is held long; returns how many went. (Their tokens are refused
    either way: a missing row is as good as a revoked one.)"""
    cutoff = datetime.now(UTC) - retain
    stale = (UserSession.expires_at < cutoff) | (UserSession.revoked_at < cutoff)
    total = 0
    while True:
        async with sessions() as db:
            batch = select(UserSession.id).where(stale).limit(batch_size)
            result = await db.execute(delete(UserSession).where(UserSession.id.in_(batch)))
            await db.commit()
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < batch_size:
            return total


class SessionCacheKeeper:
    """One per worker: renews the cache lease (after writing any missing tombstones) a few
    times per lease period, and refreshes the active-sessions gauge now and then."""

    def __init__(self, sessions: SessionService, lease_seconds: float) -> None:
        self._sessions = sessions
        self._period = lease_seconds / 3
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        rounds = 0
        # A flag as well as the cancel: a driver may turn a cancel that lands mid-query
        # into a database error, which the loop would otherwise survive.
        while not self._stopping:
            try:
                await self._sessions.sync_cache()
                if rounds % max(1, round(15 / self._period)) == 0:
                    SESSIONS_ACTIVE.set(await self._sessions.count_active())
            except (SQLAlchemyError, OSError, TimeoutError) as error:
                log.debug("session_cache_sync_failed", error=type(error).__name__)
                # PostgreSQL unreachable: no revocation can commit while it is, so cached
                # sessions stay trusted and cached reads go on (the failure matrix). The one
                # gap: a revocation whose tombstone Redis refused just before PostgreSQL went.
                await self._sessions.keep_lease()
            rounds += 1
            await asyncio.sleep(self._period)

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            await cancel_and_wait(self._task)
            self._task = None
