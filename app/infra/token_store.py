"""Token state in Redis: refresh-token families, revoked access tokens, per-user cut-offs.

A token is usable only while its family key exists, its jti is not revoked and it was
issued after the user's cut-off. All three are read with one MGET, and every read fails
closed: when Redis cannot answer, the caller gets a 503 and nothing is accepted silently.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from redis.asyncio.client import Pipeline

from app.errors import DependencyUnavailableError
from app.infra.redis import RedisGateway, RedisUnavailableError

# Compare-and-swap of the family's current refresh jti. A mismatch means a rotated token
# came back: someone holds a copy, so the whole family goes.
_ROTATE_SCRIPT: Final = """
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

UNAVAILABLE = "Token revocation state cannot be checked right now; retry shortly."


class Rotation(Enum):
    ROTATED = 1
    UNKNOWN_FAMILY = 0
    REUSE_DETECTED = -1


class TokenStore:
    def __init__(self, redis: RedisGateway, *, prefix: str) -> None:
        self._redis = redis
        self._family = f"{prefix}:tok:fam:"
        self._revoked = f"{prefix}:tok:rev:"
        self._cutoff = f"{prefix}:tok:cut:"
        self._rotate = redis.client.register_script(_ROTATE_SCRIPT)

    def queue_state(self, pipe: Pipeline, *, jti: str, family: str, subject: str) -> None:
        """Queue the read of a token's state on a pipeline the caller executes."""
        pipe.mget([f"{self._family}{family}", f"{self._revoked}{jti}", f"{self._cutoff}{subject}"])

    @staticmethod
    def usable(state: list[bytes | None], *, issued_at: int) -> bool:
        family_current, revoked, cutoff = state
        if family_current is None or revoked is not None:
            return False
        return cutoff is None or issued_at >= int(cutoff)

    async def start_family(self, family: str, refresh_jti: str, ttl_seconds: int) -> None:
        key = f"{self._family}{family}"
        try:
            await self._redis.call(
                "revocation", lambda: self._redis.client.set(key, refresh_jti, ex=ttl_seconds)
            )
        except RedisUnavailableError as error:
            raise DependencyUnavailableError(UNAVAILABLE) from error

    async def rotate(
        self, family: str, presented_jti: str, new_jti: str, ttl_seconds: int
    ) -> Rotation:
        key = f"{self._family}{family}"
        try:
            outcome = await self._redis.call(
                "revocation",
                lambda: self._rotate(keys=[key], args=[presented_jti, new_jti, ttl_seconds * 1000]),
            )
        except RedisUnavailableError as error:
            raise DependencyUnavailableError(UNAVAILABLE) from error
        return Rotation(int(outcome))

    async def revoke(self, *, jti: str, family: str, remaining_seconds: int) -> None:
        """Revoke one access token (for its remaining life) and its whole refresh family."""
        revoked_key = f"{self._revoked}{jti}"
        family_key = f"{self._family}{family}"

        async def _revoke() -> None:
            async with self._redis.client.pipeline(transaction=True) as pipe:
                pipe.set(revoked_key, b"1", ex=max(1, remaining_seconds))
                pipe.delete(family_key)
                await pipe.execute()

        try:
            await self._redis.call("revocation", _revoke)
        except RedisUnavailableError as error:
            raise DependencyUnavailableError(UNAVAILABLE) from error

    async def revoke_family(self, family: str) -> None:
        key = f"{self._family}{family}"
        try:
            await self._redis.call("revocation", lambda: self._redis.client.delete(key))
        except RedisUnavailableError as error:
            raise DependencyUnavailableError(UNAVAILABLE) from error

    async def cut_off_user(self, subject: str, *, not_before: int, ttl_seconds: int) -> None:
        """Invalidate every token of a user issued before `not_before` (epoch seconds)."""
        key = f"{self._cutoff}{subject}"
        try:
            await self._redis.call(
                "revocation", lambda: self._redis.client.set(key, not_before, ex=ttl_seconds)
            )
        except RedisUnavailableError as error:
            raise DependencyUnavailableError(UNAVAILABLE) from error
