"""Session state read from PostgreSQL (one primary-key lookup), and what a worker may keep of
it in memory: only that a session is revoked, the one fact that can never go stale."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import UserSession

# Bounded memory: a full memo is dropped whole (it only ever saves a lookup).
_REVOKED_CAPACITY: Final = 100_000
# Built once: its cache key is worked out on the first execution only.
_STATE = select(UserSession.user_id, UserSession.revoked_at, UserSession.expires_at).where(
    UserSession.id == bindparam("session_id")
)


class SessionStateReader:
    def __init__(self, reads: AsyncEngine) -> None:
        # One statement, no transaction (see create_read_engine).
        self._reads = reads
        self._revoked: set[uuid.UUID] = set()

    def known_revoked(self, session_id: uuid.UUID) -> bool:
        return session_id in self._revoked

    def remember_revoked(self, session_id: uuid.UUID) -> None:
        if len(self._revoked) >= _REVOKED_CAPACITY:
            self._revoked.clear()
        self._revoked.add(session_id)

    async def is_active(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """True while the session exists for this user, is not revoked and has not expired;
        a session found unusable is remembered as revoked."""
        async with self._reads.connect() as connection:
            row = (await connection.execute(_STATE, {"session_id": session_id})).one_or_none()
        active = (
            row is not None
            and row.user_id == user_id
            and row.revoked_at is None
            and _aware(row.expires_at) > datetime.now(UTC)
        )
        if not active:
            self.remember_revoked(session_id)
        return active


def _aware(moment: datetime) -> datetime:
    # SQLite (embedded development mode) hands timestamps back without their zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
