"""Admins made outside the API (the create-admin command): create one, or promote a user."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.infra.cache import UserCache
from app.infra.database import database_error_cause
from app.models import User
from app.services.passwords import PasswordService

# Each round but the last lost a race: a user of the address was created, or deleted, between
# its write and the previous one. Three rounds need two such races within milliseconds.
_ROUNDS = 3


class AdminCommandError(RuntimeError):
    """The admin could not be made; the message says why, in words for the command's user."""


async def create_or_promote_admin(
    sessions: async_sessionmaker[AsyncSession],
    passwords: PasswordService,
    email: str,
    password: str,
    cache: UserCache | None = None,
) -> Literal["created", "promoted"]:
    """`email` normalised already (app.schemas.user.normalize_email). A user of that address
    becomes an active admin with this password; otherwise a new admin is created. A promoted
    user's entry in `cache` is dropped, as every write of the API drops it: reads show the
    admin at once, not when the entry expires."""
    # Hashed before the session opens: Argon2 must not hold a connection.
    password_hash = await passwords.hash(password)
    promote = (
        update(User)
        .where(User.email == email)
        .values(is_admin=True, is_active=True, password_hash=password_hash)
        .returning(User.id)
    )
    try:
        async with sessions() as session:
            for _ in range(_ROUNDS):
                # Promote first, create if nobody has the address: each step is one statement,
                # so a user signing up meanwhile makes the create fail on the unique address,
                # and the next round promotes that user (a read, then a write, would crash).
                promoted = (await session.execute(promote)).scalar_one_or_none()
                if promoted is not None:
                    await session.commit()
                    if cache is not None:
                        await cache.invalidate(promoted)
                    return "promoted"
                session.add(User(email=email, password_hash=password_hash, is_admin=True))
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue
                return "created"
    except (OSError, SQLAlchemyError) as error:
        raise AdminCommandError(
            f"database unreachable or refused the write: {database_error_cause(error)}"
        ) from error
    raise AdminCommandError(
        f"{email} was created and deleted again {_ROUNDS} times meanwhile; run it again"
    )
