"""Login, refresh and logout: the rules around credentials and sessions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AuthenticationError
from app.models import User
from app.observability.metrics import record_auth
from app.schemas.auth import TokenPair
from app.services.passwords import PasswordService
from app.services.tokens import TokenClaims, TokenService

_BAD_CREDENTIALS = "Incorrect email or password."


class AuthService:
    def __init__(
        self, session: AsyncSession, passwords: PasswordService, tokens: TokenService
    ) -> None:
        self._session = session
        self._passwords = passwords
        self._tokens = tokens

    async def login(self, email: str, password: str) -> TokenPair:
        user = await self._session.scalar(select(User).where(User.email == email.strip().lower()))
        # An unknown email still pays for one Argon2 verification (see PasswordService.verify).
        valid = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not valid or not user.is_active:
            record_auth("login_failure")
            raise AuthenticationError(_BAD_CREDENTIALS)
        if self._passwords.needs_rehash(user.password_hash):
            user.password_hash = await self._passwords.hash(password)
            await self._session.commit()
        pair = await self._tokens.issue(user.id, is_admin=user.is_admin)
        record_auth("login_success")
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self._tokens.decode(refresh_token, "refresh")
        user = await self._session.get(User, claims.subject)
        if user is None or not user.is_active:
            record_auth("refresh_failure")
            raise AuthenticationError("The account of this token no longer exists or is disabled.")
        pair = await self._tokens.rotate(claims, is_admin=user.is_admin)
        record_auth("refresh_success")
        return pair

    async def logout(self, access: TokenClaims, refresh_token: str | None) -> None:
        await self._tokens.revoke(access, refresh_token)
        record_auth("logout")
