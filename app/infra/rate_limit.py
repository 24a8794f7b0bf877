"""Fixed-window rate limits kept in Redis: one counter per caller and window, counted and
given its expiry in one round trip."""

from __future__ import annotations

import math
import time
from typing import Final, NamedTuple

from app.errors import DependencyUnavailableError
from app.infra.redis import RedisGateway, RedisUnavailableError
from app.infra.redis_round_trip import Command
from app.observability.metrics import RateLimitScope
from app.settings import Rate

# A window's counter outlives the window by this much: a replica whose clock runs a little
# behind still finds (and does not recreate) the counter of a window that just ended for
# the others.
_EXPIRY_SLACK_MS: Final = 5_000


# Made on every authenticated request: named tuples, which are immutable as a frozen
# dataclass is, but built several times faster (no per-field object.__setattr__).
class RateLimitDecision(NamedTuple):
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of an allowed request, as a response's raw headers: what
        `headers()` gives, without the encoding and lowercasing of a header set by name."""
        return [
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % self.reset_seconds),
        ]

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class Window(NamedTuple):
    """The counter of the current window: its key, its end (ms since the epoch) and the
    milliseconds left in it."""

    key: str
    end_ms: int
    left_ms: int


class RateLimiter:
    """Windows are aligned to multiples of the period, so a window's counter has a name of
    its own: INCR creates it and PEXPIREAT gives it the window's end. Two plain commands
    instead of a script, and a counter that somehow kept no expiry (a client dead between
    the two) can never lock its caller out: the next window counts in a new key."""

    def __init__(self, redis: RedisGateway, *, prefix: str, fail_open: bool) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:rl:"
        self._fail_open = fail_open

    def window(self, scope: RateLimitScope, identity: str, rate: Rate) -> Window:
        period_ms = rate.period_seconds * 1000
        now_ms = int(time.time() * 1000)
        index = now_ms // period_ms
        end_ms = (index + 1) * period_ms
        return Window(f"{self._prefix}{scope}:{identity}:{index}", end_ms, end_ms - now_ms)

    async def hit(
        self, scope: RateLimitScope, identity: str, rate: Rate
    ) -> RateLimitDecision | None:
        """Count one request; None when Redis is unavailable and the policy is fail-open."""
        window = self.window(scope, identity, rate)

        try:
            counted = await self._redis.call(
                "rate_limit", lambda: self._redis.batch(self.hit_commands(window))
            )
        except RedisUnavailableError as error:
            if self._fail_open:
                return None
            raise DependencyUnavailableError(
                "The rate limiter cannot reach its store and is configured to fail closed."
            ) from error
        return self.decision(counted[0], window, rate)

    @staticmethod
    def hit_commands(window: Window) -> list[Command]:
        """One count: two commands for one round trip, the count's reply first."""
        return [
            ("INCRBY", window.key, 1),
            ("PEXPIREAT", window.key, window.end_ms + _EXPIRY_SLACK_MS),
        ]

    @staticmethod
    def decision(count: object, window: Window, rate: Rate) -> RateLimitDecision:
        counted = int(count)  # type: ignore[call-overload]
        return RateLimitDecision(
            allowed=counted <= rate.limit,
            limit=rate.limit,
            remaining=max(0, rate.limit - counted),
            reset_seconds=max(1, math.ceil(window.left_ms / 1000)),
        )
