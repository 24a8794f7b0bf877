"""One Redis round trip per authenticated request: the token's state, the caller's rate-limit
count and, for a read, the cached value it is about to ask for."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import AuthenticationError, DependencyUnavailableError
from app.infra.rate_limit import RateLimitDecision, RateLimiter
from app.infra.redis import RedisGateway, RedisUnavailableError
from app.infra.token_store import UNAVAILABLE, TokenStore
from app.observability.metrics import record_auth
from app.services.tokens import TokenClaims
from app.settings import Rate


@dataclass(frozen=True, slots=True)
class Admission:
    rate_limit: RateLimitDecision | None
    # The raw value under the prefetched key (None: absent); only meaningful if prefetched.
    prefetched: bytes | None
    did_prefetch: bool


class RequestGate:
    """Pipelines the revocation read (fails closed) with the per-user rate-limit count and an
    optional cache read; those fail with it: a request whose token cannot be checked is
    refused anyway."""

    def __init__(self, redis: RedisGateway, tokens: TokenStore, limiter: RateLimiter) -> None:
        self._redis = redis
        self._tokens = tokens
        self._limiter = limiter

    async def admit(
        self, claims: TokenClaims, rate: Rate | None, prefetch: str | None = None
    ) -> Admission:
        subject = str(claims.subject)

        async def run() -> list[object]:
            async with self._redis.client.pipeline(transaction=False) as pipe:
                self._tokens.queue_state(
                    pipe, jti=claims.jti, family=claims.family, subject=subject
                )
                if rate is not None:
                    self._limiter.queue_hit(pipe, "api", subject, rate)
                if prefetch is not None:
                    pipe.get(prefetch)
                results: list[object] = await pipe.execute()
                return results

        try:
            results = await self._redis.call("revocation", run)
        except RedisUnavailableError as error:
            raise DependencyUnavailableError(UNAVAILABLE) from error
        if not TokenStore.usable(results[0], issued_at=claims.issued_at):  # type: ignore[arg-type]
            record_auth("revoked_token_rejected")
            raise AuthenticationError("The token has been revoked.")
        decision = RateLimiter.decision(results[1], rate) if rate is not None else None  # type: ignore[arg-type]
        value = results[-1] if prefetch is not None else None
        return Admission(decision, value, prefetch is not None)  # type: ignore[arg-type]
