"""Admission of an authenticated request in one Redis round trip: the session's cached state,
the caller's rate-limit count and, for a read, the cached value it is about to ask for.

When Redis cannot answer, the session's state comes from PostgreSQL (one primary-key
lookup) and the rate limit follows RATE_LIMIT_FAIL_OPEN: an outage costs speed, never a
login and never a revocation."""

from __future__ import annotations

from typing import NamedTuple

from app.errors import AuthenticationError, DependencyUnavailableError
from app.infra.rate_limit import RateLimitDecision, RateLimiter
from app.infra.redis import RedisGateway, RedisUnavailableError
from app.infra.redis_round_trip import Command
from app.infra.session_cache import SessionCache
from app.infra.session_state import SessionStateReader
from app.observability.metrics import record_auth, record_session_lookup
from app.services.tokens import TokenClaims
from app.settings import Rate


class Admission(NamedTuple):
    rate_limit: RateLimitDecision | None
    # The raw value under the prefetched key (None: absent); only meaningful if prefetched.
    prefetched: bytes | None
    did_prefetch: bool


def _revoked() -> AuthenticationError:
    record_auth("revoked_token_rejected")
    return AuthenticationError("The token has been revoked.")


class RequestGate:
    def __init__(
        self,
        redis: RedisGateway,
        cache: SessionCache,
        state: SessionStateReader,
        limiter: RateLimiter,
        *,
        rate_limit_fail_open: bool,
    ) -> None:
        self._redis = redis
        self._cache = cache
        self._state = state
        self._limiter = limiter
        self._fail_open = rate_limit_fail_open

    async def admit(
        self, claims: TokenClaims, rate: Rate | None, prefetch: str | None = None
    ) -> Admission:
        session_id = claims.session_id
        if self._state.known_revoked(session_id):
            raise _revoked()

        window = self._limiter.window("api", claims.subject_text, rate) if rate else None
        keys = self._cache.state_keys(session_id)
        if prefetch is not None:
            keys.append(prefetch)

        # One MGET (session entry, lease and the read's cache entry share a hash tag, so one
        # slot even on a cluster) and the rate-limit count: three commands, one round trip.
        commands: list[Command] = [("MGET", *keys)]
        if window is not None:
            commands += self._limiter.hit_commands(window)
        try:
            results = await self._redis.call("revocation", lambda: self._redis.batch(commands))
        except RedisUnavailableError:
            return await self._admit_from_database(claims, rate)
        values: list[bytes | None] = results[0]
        cached = SessionCache.state(values[0], values[1])
        if cached == "revoked":
            self._state.remember_revoked(session_id)
            raise _revoked()
        if cached != "active":
            record_session_lookup("cache_miss" if cached == "unknown" else "lease_missing")
            active = await self._state.is_active(session_id, claims.subject)
            await self._cache.refill(session_id, active=active)
            if not active:
                raise _revoked()
        decision = (
            RateLimiter.decision(results[1], window, rate)
            if window is not None and rate is not None
            else None
        )
        value = values[2] if prefetch is not None else None
        return Admission(decision, value, prefetch is not None)

    async def _admit_from_database(self, claims: TokenClaims, rate: Rate | None) -> Admission:
        record_session_lookup("redis_unavailable")
        if not await self._state.is_active(claims.session_id, claims.subject):
            raise _revoked()
        if rate is not None and not self._fail_open:
            raise DependencyUnavailableError(
                "The rate limiter cannot reach its store and is configured to fail closed."
            )
        return Admission(None, None, False)
