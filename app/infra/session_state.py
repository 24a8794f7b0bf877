"""Session state read from PostgreSQL (one primary-key lookup), and what a worker may keep of
it in memory: only that a session is revoked, the one fact that can never go stale."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import UserSession

# Bounded memory: a full memo is dropped whole (it only ever saves a lookup).
_REVOKED_CAPACITY: Final = 100_000


class SessionStateReader:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
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
        query = select(UserSession.user_id, UserSession.revoked_at, UserSession.expires_at).where(
            UserSession.id == session_id
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).one_or_none()
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
