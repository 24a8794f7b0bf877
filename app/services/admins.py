"""Admins made outside the API (the create-admin command): create one, or promote a user."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import User
from app.services.passwords import PasswordService


async def create_or_promote_admin(
    sessions: async_sessionmaker[AsyncSession],
    passwords: PasswordService,
    email: str,
    password: str,
) -> Literal["created", "promoted"]:
    """`email` normalised already (app.schemas.user.normalize_email). A user of that address
    becomes an active admin with this password; otherwise a new admin is created."""
    # Hashed before the session opens: Argon2 must not hold a connection.
    password_hash = await passwords.hash(password)
    async with sessions() as session:
        user = await session.scalar(select(User).where(User.email == email))
        if user is None:
            session.add(User(email=email, password_hash=password_hash, is_admin=True))
        else:
            user.is_admin, user.is_active, user.password_hash = True, True, password_hash
        await session.commit()
    return "created" if user is None else "promoted"
