"""Fixed-window rate limits kept in Redis, counted atomically by one Lua script."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from redis.asyncio.client import Pipeline

from app.errors import DependencyUnavailableError
from app.infra.redis import RedisGateway, RedisUnavailableError
from app.observability.metrics import RateLimitScope
from app.settings import Rate

# INCR and PEXPIRE in one script: two separate commands could leave a key without expiry
# if the client died between them, locking the caller out for good.
_COUNT_SCRIPT: Final = """
local current = redis.call('INCR', KEYS[1])
if current == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {current, ttl}
"""


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimiter:
    def __init__(self, redis: RedisGateway, *, prefix: str, fail_open: bool) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:rl:"
        self._fail_open = fail_open
        self._script = redis.client.register_script(_COUNT_SCRIPT)

    def _key(self, scope: RateLimitScope, identity: str) -> str:
        return f"{self._prefix}{scope}:{identity}"

    async def hit(
        self, scope: RateLimitScope, identity: str, rate: Rate
    ) -> RateLimitDecision | None:
        """Count one request; None when Redis is unavailable and the policy is fail-open."""
        key = self._key(scope, identity)
        window_ms = rate.period_seconds * 1000
        try:
            counted = await self._redis.call(
                "rate_limit", lambda: self._script(keys=[key], args=[window_ms])
            )
        except RedisUnavailableError as error:
            if self._fail_open:
                return None
            raise DependencyUnavailableError(
                "The rate limiter cannot reach its store and is configured to fail closed."
            ) from error
        return self.decision(counted, rate)

    def queue_hit(self, pipe: Pipeline, scope: RateLimitScope, identity: str, rate: Rate) -> None:
        """Queue one count on a pipeline the caller executes (EVAL, not EVALSHA: a pipeline
        with registered scripts first asks SCRIPT EXISTS, a round trip of its own)."""
        pipe.eval(_COUNT_SCRIPT, 1, self._key(scope, identity), rate.period_seconds * 1000)

    @staticmethod
    def decision(counted: list[int], rate: Rate) -> RateLimitDecision:
        count, ttl_ms = int(counted[0]), int(counted[1])
        return RateLimitDecision(
            allowed=count <= rate.limit,
            limit=rate.limit,
            remaining=max(0, rate.limit - count),
            reset_seconds=max(1, math.ceil(ttl_ms / 1000)),
        )
