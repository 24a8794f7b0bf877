"""Login, refresh and logout: the rules around credentials and sessions."""

from __future__ import annotations

import uuid

from sqlalchemy import String, bindparam, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.errors import AuthenticationError
from app.infra.row_read import OneRowRead
from app.models import LoginThrottle, User
from app.observability.metrics import record_auth
from app.schemas.auth import TokenPair
from app.schemas.user import normalize_email
from app.services.login_throttle import LoginThrottleService, account_key
from app.services.passwords import PasswordService
from app.services.sessions import ClientInfo, SessionService
from app.services.tokens import TokenClaims, TokenService

_BAD_CREDENTIALS = "Incorrect email or password."

# An account as a login needs it, in one statement: its user (if any) and its throttle row (if
# any). The one-row subquery gives a row when neither exists, as unknown accounts are throttled
# alike. One round trip in autocommit, where a transaction would add a BEGIN and a ROLLBACK.
_ACCOUNT = (
    select(
        User.id,
        User.password_hash,
        User.is_active,
        LoginThrottle.account_hash.label("throttle_row"),
        LoginThrottle.blocked_until,
    )
    .select_from(select(literal_column("1").label("one")).subquery("one"))
    .outerjoin(User, User.email == bindparam("email", type_=String))
    .outerjoin(LoginThrottle, LoginThrottle.account_hash == bindparam("account", type_=String))
)


class AuthService:
    """Stateless and shared by all requests of a worker, like UserService."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reads: AsyncEngine,
        passwords: PasswordService,
        tokens: TokenService,
        login_sessions: SessionService,
        throttle: LoginThrottleService,
    ) -> None:
        self._sessions = sessions
        self._account = OneRowRead(reads, _ACCOUNT)
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
            found = await self._account.first(email=email, account=account_key(email))
            assert found is not None  # the one-row subquery always gives a row
            # Unknown accounts are throttled alike: the answer never tells them apart.
            had_failures = self._throttle.check(
                found["throttle_row"] is not None, found["blocked_until"]
            )
            user = found if found["id"] is not None else None
        # The connection is back in the pool before Argon2 runs: hashing takes tens of
        # milliseconds and must never hold one. An unknown email still pays for one
        # verification (see PasswordService.verify).
        valid = await self._passwords.verify(user["password_hash"] if user else None, password)
        if user is None or not valid or not user["is_active"]:
            record_auth("login_failure")
            if account is not None:
                await self._throttle.failed(account)
            raise AuthenticationError(_BAD_CREDENTIALS)
        if had_failures:
            await self._throttle.succeeded(email)
        user_id: uuid.UUID = user["id"]
        verified_hash: str = user["password_hash"]
        if self._passwords.needs_rehash(verified_hash):
            new_hash = await self._passwords.hash(password)
            async with self._sessions() as session:
                await session.execute(
                    update(User)
                    .where(User.id == user_id, User.password_hash == verified_hash)
                    .values(password_hash=new_hash)
                )
                await session.commit()
            verified_hash = new_hash
        pair = await self._login_sessions.open(user_id, verified_hash, client)
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
