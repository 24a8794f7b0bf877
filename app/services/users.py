"""User rules: sign-up, cached reads, updates and deletion with their permissions."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

import orjson
from sqlalchemy import bindparam, delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from app.errors import (
    ConflictError,
    DomainError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from app.infra.cache import Lookup, UserCache
from app.infra.row_read import OneRowRead
from app.models import User
from app.schemas.user import UserCreate, UserPage, UserRead, UserUpdate
from app.services.passwords import PasswordService
from app.services.sessions import SessionService
from app.services.tokens import TokenClaims

MAX_PAGE_SIZE = 100
_EMAIL_TAKEN = "A user with this email already exists."
_LAST_ADMIN = (
    "The last admin cannot be demoted, deactivated or deleted; make another user admin first."
)


class InvalidCursorError(DomainError):
    status = 400
    slug = "invalid-cursor"
    title = "Invalid cursor"


def serialize_user(user: User) -> bytes:
    return UserRead.model_validate(user).model_dump_json().encode()


# What a read returns, selected as plain columns: a read needs no ORM entity, identity map
# or change tracking, which cost a cache miss more than its query does. Built once: the
# statement's cache key is worked out on its first execution only.
_READ_ONE = select(*(getattr(User, name) for name in UserRead.model_fields)).where(
    User.id == bindparam("user_id")
)


def _no_such_user(user_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"User {user_id} does not exist.")


def _encode_cursor(user: User) -> str:
    raw = orjson.dumps([user.created_at.isoformat(), str(user.id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor of ours names. The client holds it, so anything may come back:
    every malformed, mistyped or out-of-range part is the client's error."""
    invalid = InvalidCursorError("The cursor is not one this service issued.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = orjson.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise invalid from error
    if not (isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, str) for p in parts)):
        raise invalid
    try:
        created_at = datetime.fromisoformat(parts[0])
        # Normalised to UTC: an offset that pushes it past year 1 or 9999 cannot be a
        # timestamp the database holds (and the driver could not encode it).
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return created_at.astimezone(UTC), uuid.UUID(parts[1])
    except (ValueError, OverflowError) as error:
        raise invalid from error


class UserService:
    """Stateless and shared by all requests of a worker; each operation is one unit of work
    in a session of its own, opened only when the operation needs the database."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reads: AsyncEngine,
        cache: UserCache,
        passwords: PasswordService,
        login_sessions: SessionService,
    ) -> None:
        self._sessions = sessions
        # Single-statement reads: no session, no transaction (see create_read_engine).
        self._read_one = OneRowRead(reads, _READ_ONE)
        self._cache = cache
        self._passwords = passwords
        self._login_sessions = login_sessions

    async def create(self, data: UserCreate, *, is_admin: bool = False) -> User:
        user = User(
            email=data.email,
            full_name=data.full_name,
            password_hash=await self._passwords.hash(data.password),
            is_admin=is_admin,
        )
        async with self._sessions() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError as error:
                raise ConflictError(_EMAIL_TAKEN) from error
        return user

    async def get_json(self, user_id: uuid.UUID, cached: Lookup | None = None) -> bytes:
        """The user as JSON bytes, from the cache when it can; raises NotFoundError.
        `cached` is the cache lookup when the caller already made it."""

        async def load() -> bytes | None:
            row = await self._read_one.first(user_id=user_id)
            if row is None:
                return None
            return UserRead.model_validate(dict(row)).model_dump_json().encode()

        payload = await self._cache.read_through(user_id, load, cached)
        if payload is None:
            raise _no_such_user(user_id)
        return payload

    @staticmethod
    async def _get(session: AsyncSession, user_id: uuid.UUID) -> User:
        user = await session.get(User, user_id)
        if user is None:
            raise _no_such_user(user_id)
        return user

    @staticmethod
    def _authorize_write(actor: TokenClaims, user_id: uuid.UUID) -> None:
        if actor.subject != user_id and not actor.is_admin:
            raise PermissionDeniedError("You may change only your own account.")

    async def update(self, actor: TokenClaims, user_id: uuid.UUID, data: UserUpdate) -> User:
        self._authorize_write(actor, user_id)
        changes = data.model_dump(exclude_unset=True)
        if not actor.is_admin and ({"is_admin", "is_active"} & changes.keys()):
            raise PermissionDeniedError("Only an admin may change is_admin or is_active.")
        # Hash before the session opens: Argon2 must not hold a pooled connection.
        new_hash = await self._passwords.hash(data.password) if data.password else None
        async with self._sessions() as session:
            user = await self._get(session, user_id)
            if changes.get("is_admin") is False or changes.get("is_active") is False:
                await self._keep_an_admin(session, user_id)
            reason = self._apply(user, changes, new_hash)
            revoked: list[uuid.UUID] = []
            try:
                if reason is not None:
                    # The user row's lock first: a login in flight either commits its
                    # session before this (and it is revoked here) or sees the change.
                    await session.flush()
                    # A password change keeps the caller's own session; every other one goes.
                    keep = (
                        actor.session_id
                        if reason == "password_change" and actor.subject == user_id
                        else None
                    )
                    revoked = await self._login_sessions.revoke_in(
                        session, self._login_sessions.of_user(user_id, keep=keep), reason
                    )
                await session.commit()
            except IntegrityError as error:
                raise ConflictError(_EMAIL_TAKEN) from error
            except StaleDataError as error:
                # The row was read, then deleted by another transaction before this one
                # wrote it: the user no longer exists.
                raise _no_such_user(user_id) from error
        # Only after the commit: a reader in between refills the cache from the old row
        # at worst for the moment until this delete lands, never after it.
        await self._cache.invalidate(user_id)
        await self._login_sessions.after_commit(revoked)
        return user

    @staticmethod
    async def _keep_an_admin(session: AsyncSession, user_id: uuid.UUID) -> None:
        """Refuse to take away the last active admin. Every active admin row is locked, in
        one order, until the transaction ends: two admins demoting each other at once run one
        after the other, and the second sees the first's change."""
        admins = await session.scalars(
            select(User.id)
            .where(User.is_admin.is_(True), User.is_active.is_(True))
            .order_by(User.id)
            .with_for_update()
        )
        if set(admins) == {user_id}:
            raise ConflictError(_LAST_ADMIN)

    @staticmethod
    def _apply(user: User, changes: dict[str, object], new_hash: str | None) -> str | None:
        """Set the changed fields; the reason sessions must be revoked, if they must."""
        reason: str | None = None
        if "password" in changes:
            if new_hash is None:
                raise InvalidInputError("password cannot be null.")
            user.password_hash = new_hash
            reason = "password_change"
        for field in ("full_name", "email", "is_active", "is_admin"):
            if field in changes:
                value = changes[field]
                if value is None and field != "full_name":
                    raise InvalidInputError(f"{field} cannot be null.")
                if field in {"is_active", "is_admin"} and getattr(user, field) != value:
                    reason = "deactivated" if field == "is_active" else "role_change"
                setattr(user, field, value)
        return reason

    async def delete(self, actor: TokenClaims, user_id: uuid.UUID) -> None:
        self._authorize_write(actor, user_id)
        async with self._sessions() as session:
            await self._keep_an_admin(session, user_id)
            # Revoked before the rows go with the user: the backlog keeps their ids until
            # the cache holds their tombstones.
            revoked = await self._login_sessions.revoke_in(
                session, self._login_sessions.of_user(user_id), "user_deleted"
            )
            result = await session.execute(delete(User).where(User.id == user_id))
            await session.commit()
        if not getattr(result, "rowcount", 0):
            raise _no_such_user(user_id)
        await self._cache.invalidate(user_id)
        await self._login_sessions.after_commit(revoked)

    async def list(self, actor: TokenClaims, *, limit: int, cursor: str | None) -> UserPage:
        if not actor.is_admin:
            raise PermissionDeniedError("Only an admin may list users.")
        query = select(User).order_by(User.created_at, User.id).limit(limit + 1)
        if cursor:
            after = _decode_cursor(cursor)
            query = query.where(tuple_(User.created_at, User.id) > after)
        async with self._sessions() as session:
            users = list((await session.scalars(query)).all())
        has_more = len(users) > limit
        users = users[:limit]
        return UserPage(
            items=[UserRead.model_validate(user) for user in users],
            next_cursor=_encode_cursor(users[-1]) if has_more and users else None,
        )
