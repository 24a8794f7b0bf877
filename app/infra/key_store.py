"""Signing keys in the database: read them all, and change them under one lock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import SigningKey

# Serialises rotations, retirements and the first key's creation across replicas and CLI
# runs (an arbitrary constant: "keys" in ASCII).
_ADVISORY_LOCK = 0x6B657973


def to_epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class KeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def load(self) -> list[SigningKey]:
        async with self._sessions() as session:
            rows = await session.scalars(select(SigningKey).order_by(SigningKey.published_at))
            return list(rows)

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[AsyncSession]:
        """A transaction holding the key lock; rows read in it are the current truth."""
        async with self._sessions() as session, session.begin():
            if session.bind.dialect.name == "postgresql":
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK}
                )
            yield session

    @staticmethod
    async def rows(session: AsyncSession) -> list[SigningKey]:
        result = await session.scalars(select(SigningKey).order_by(SigningKey.published_at))
        return list(result)
