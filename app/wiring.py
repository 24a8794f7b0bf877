"""The composition root: builds one worker's resources and services, closes them on shutdown.

The only module that knows how the pieces fit together; everything else receives what it
needs. Opened in the app's lifespan (after gunicorn forks), kept on `app.state.resources`.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.infra.cache import UserCache
from app.infra.database import (
    create_engine,
    create_read_engine,
    create_session_factory,
    is_embedded,
)
from app.infra.rate_limit import RateLimiter
from app.infra.redis import RedisGateway, create_redis
from app.infra.request_gate import RequestGate
from app.infra.session_cache import SessionCache
from app.infra.session_state import SessionStateReader
from app.services.auth import AuthService
from app.services.introspection import IntrospectionService, ServiceClients
from app.services.keys import TokenSigner, token_signer
from app.services.login_throttle import LoginThrottleService
from app.services.passwords import PasswordService
from app.services.sessions import SessionCacheKeeper, SessionService
from app.services.tokens import TokenService
from app.services.users import UserService
from app.settings import Settings

log = structlog.get_logger("app.wiring")


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    # Readiness opens its own connection, outside the pool: an exhausted pool is overload,
    # not an unreachable database, and must not take every replica out of the Service.
    probe_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: RedisGateway
    cache: UserCache
    rate_limiter: RateLimiter
    passwords: PasswordService
    tokens: TokenService
    keys: TokenSigner
    gate: RequestGate
    users: UserService
    auth: AuthService
    introspection: IntrospectionService
    login_sessions: SessionService
    session_keeper: SessionCacheKeeper

    @classmethod
    def open(cls, settings: Settings) -> Resources:
        engine = create_engine(settings)
        redis = create_redis(settings)
        if is_embedded(settings) or redis.embedded:
            log.warning(
                "embedded_mode",
                message=(
                    "No DATABASE_URL/REDIS_URL: running on an embedded SQLite database with the "
                    "cache and rate limiter in process memory. Development only."
                ),
                database="sqlite" if is_embedded(settings) else "postgresql",
                redis="in-process" if redis.embedded else "redis",
            )
        prefix = settings.cache_key_prefix
        rate_limiter = RateLimiter(redis, prefix=prefix, fail_open=settings.rate_limit_fail_open)
        sessions = create_session_factory(engine)
        reads = create_read_engine(engine, settings)
        cache = UserCache(redis, settings)
        passwords = PasswordService(settings)
        keys = token_signer(settings, sessions)
        tokens = TokenService(settings, keys)
        session_cache = SessionCache(
            redis,
            prefix=prefix,
            lease_seconds=settings.session_cache_lease_seconds,
            active_ttl_seconds=settings.access_token_ttl_seconds,
            # Outlives every access token issued before the revocation (plus verify leeway).
            revoked_ttl_seconds=settings.access_token_ttl_seconds + 60,
        )
        session_state = SessionStateReader(reads)
        throttle = LoginThrottleService(sessions, settings)
        login_sessions = SessionService(
            sessions, reads, tokens, session_cache, session_state, settings
        )
        gate = RequestGate(
            redis,
            session_cache,
            session_state,
            rate_limiter,
            rate_limit_fail_open=settings.rate_limit_fail_open,
        )
        introspection = IntrospectionService(
            tokens,
            gate,
            ServiceClients(settings.introspection_clients_text),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        return cls(
            settings=settings,
            engine=engine,
            probe_engine=engine if is_embedded(settings) else create_engine(settings, pooled=False),
            sessions=sessions,
            redis=redis,
            cache=cache,
            rate_limiter=rate_limiter,
            passwords=passwords,
            tokens=tokens,
            keys=keys,
            gate=gate,
            users=UserService(sessions, reads, cache, passwords, login_sessions),
            auth=AuthService(sessions, reads, passwords, tokens, login_sessions, throttle),
            login_sessions=login_sessions,
            session_keeper=SessionCacheKeeper(login_sessions, settings.session_cache_lease_seconds),
            introspection=introspection,
        )

    def start(self) -> None:
        """Background work of the worker; call from the running event loop."""
        self.session_keeper.start()

    async def close(self) -> None:
        await self.keys.stop()
        await self.session_keeper.stop()
        await self.redis.close()
        await self.engine.dispose()
        await self.probe_engine.dispose()
        self.passwords.close()
