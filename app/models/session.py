"""Login sessions (one row per login, i.e. per refresh-token family) and their cache backlog."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class UserSession(Base):
    """The source of truth for a login: its tokens are usable only while this row exists,
    is not revoked and has not expired."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_id", "user_id"),
        # Housekeeping deletes expired rows in batches, oldest first.
        Index("ix_sessions_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the current refresh token was issued; its tokens' iat derives from it.
    rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Bumped by every refresh rotation; the refresh token carries it as `gen`.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # SHA-256 of the current refresh token's id and of the one it replaced (never tokens).
    refresh_hash: Mapped[str] = mapped_column(String(64))
    previous_refresh_hash: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    client_address: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class SessionCacheBacklog(Base):
    """Revocations whose Redis tombstone may not have been written yet. Written in the same
    transaction as the revocation; the cache lease is not renewed while any row is here."""

    __tablename__ = "session_cache_backlog"

    session_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed logins per account (keyed by a hash of the email), shared by every replica."""

    __tablename__ = "login_throttle"

    account_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
