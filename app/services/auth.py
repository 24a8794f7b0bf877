"""Login, refresh and logout: the rules around credentials and sessions."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import AuthenticationError
from app.models import User
from app.observability.metrics import record_auth
from app.schemas.auth import TokenPair
from app.schemas.user import normalize_email
from app.services.login_throttle import LoginThrottleService
from app.services.passwords import PasswordService
from app.services.sessions import ClientInfo, SessionService
from app.services.tokens import TokenClaims, TokenService

_BAD_CREDENTIALS = "Incorrect email or password."


class AuthService:
    """Stateless and shared by all requests of a worker, like UserService."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: PasswordService,
        tokens: TokenService,
        login_sessions: SessionService,
        throttle: LoginThrottleService,
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        self._tokens = tokens
        self._login_sessions = login_sessions
        self._throttle = throttle

    async def login(self, email: str, password: str, client: ClientInfo) -> TokenPair:
        user = None
        had_failures = False
        account: str | None = None
        try:
            # Looked up in the form sign-up stored it in (Unicode-normalised, lower case).
            email = normalize_email(email)
        except ValueError:
            pass  # no address (a NUL, a bare name): no user has it; still pay one verification
        else:
            account = email
            # One session for both reads: one pool checkout and one transaction (BEGIN and
            # ROLLBACK are round trips to PostgreSQL of their own) instead of two.
            async with self._sessions() as session:
                # Unknown accounts are throttled alike: the answer never tells them apart.
                had_failures = await self._throttle.check(session, email)
                user = await session.scalar(select(User).where(User.email == email))
        # The connection is back in the pool before Argon2 runs: hashing takes tens of
        # milliseconds and must never hold one. An unknown email still pays for one
        # verification (see PasswordService.verify).
        valid = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not valid or not user.is_active:
            record_auth("login_failure")
            if account is not None:
                await self._throttle.failed(account)
            raise AuthenticationError(_BAD_CREDENTIALS)
        if had_failures:
            await self._throttle.succeeded(email)
        verified_hash = user.password_hash
        if self._passwords.needs_rehash(user.password_hash):
            new_hash = await self._passwords.hash(password)
            async with self._sessions() as session:
                await session.execute(
                    update(User)
                    .where(User.id == user.id, User.password_hash == verified_hash)
                    .values(password_hash=new_hash)
                )
                await session.commit()
            verified_hash = new_hash
        pair = await self._login_sessions.open(user.id, verified_hash, client)
        record_auth("login_success")
        return pair

    async def refresh(self, refresh_token: str, client: ClientInfo) -> TokenPair:
        return await self._login_sessions.refresh(refresh_token, client)

    async def logout(self, access: TokenClaims, refresh_token: str | None) -> None:
        """Revoke the access token's session, and the refresh token's if it is another
        session of the same user."""
        sessions = {access.session_id}
        if refresh_token:
            other = self._tokens.decode(refresh_token, "refresh")
            if other.subject != access.subject:
                raise AuthenticationError("The refresh token belongs to another user.")
            sessions.add(other.session_id)
        await self._login_sessions.revoke_sessions(access.subject, sessions, "logout")
        record_auth("logout")
