"""Login, refresh and logout: the rules around credentials and sessions."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import AuthenticationError
from app.models import User
from app.observability.metrics import record_auth
from app.schemas.auth import TokenPair
from app.schemas.user import normalize_email
from app.services.passwords import PasswordService
from app.services.tokens import TokenClaims, TokenService

_BAD_CREDENTIALS = "Incorrect email or password."


class AuthService:
    """Stateless and shared by all requests of a worker, like UserService."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: PasswordService,
        tokens: TokenService,
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        self._tokens = tokens

    async def login(self, email: str, password: str) -> TokenPair:
        user = None
        try:
            # Looked up in the form sign-up stored it in (Unicode-normalised, lower case).
            email = normalize_email(email)
        except ValueError:
            pass  # no address (a NUL, a bare name): no user has it; still pay one verification
        else:
            async with self._sessions() as session:
                user = await session.scalar(select(User).where(User.email == email))
        # The connection is back in the pool before Argon2 runs: hashing takes tens of
        # milliseconds and must never hold one. An unknown email still pays for one
        # verification (see PasswordService.verify).
        valid = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not valid or not user.is_active:
            record_auth("login_failure")
            raise AuthenticationError(_BAD_CREDENTIALS)
        if self._passwords.needs_rehash(user.password_hash):
            new_hash = await self._passwords.hash(password)
            async with self._sessions() as session:
                await session.execute(
                    update(User).where(User.id == user.id).values(password_hash=new_hash)
                )
                await session.commit()
        pair = await self._tokens.issue(user.id, is_admin=user.is_admin)
        record_auth("login_success")
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self._tokens.decode(refresh_token, "refresh")
        async with self._sessions() as session:
            user = await session.get(User, claims.subject)
        if user is None or not user.is_active:
            record_auth("refresh_failure")
            raise AuthenticationError("The account of this token no longer exists or is disabled.")
        pair = await self._tokens.rotate(claims, is_admin=user.is_admin)
        record_auth("refresh_success")
        return pair

    async def logout(self, access: TokenClaims, refresh_token: str | None) -> None:
        await self._tokens.revoke(access, refresh_token)
        record_auth("logout")
