"""Read-through Redis cache of serialized users, with stampede protection and negative entries."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Final, get_args

from opentelemetry import trace

from app.infra.redis import RedisGateway, RedisUnavailableError
from app.observability.metrics import CacheResult, record_cache
from app.observability.recorded_spans import ConstantAttributes, set_constant_attributes
from app.observability.tracing import record_span
from app.settings import Settings

# What a negative entry holds: the user is known not to exist (a 404 is cached briefly).
MISSING: Final = b"\x00"
# How long a worker that lost the cross-worker lock waits for the winner's value.
_LOCK_WAIT_STEPS: Final = (0.005, 0.01, 0.02, 0.04)

# Store a loaded value only if this loader still holds the key's lock: an invalidation that
# landed while it was loading deleted the lock, and the value may be the row before that write.
_STORE_IF_LOCKED: Final = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
redis.call('DEL', KEYS[2])
return 1
"""

tracer = trace.get_tracer(__name__)
# A lookup span's attributes, one set per result.
_RESULT_ATTRIBUTES: Final[dict[str, ConstantAttributes]] = {
    result: ConstantAttributes({"cache.result": result, "cache.hit": result == "hit"})
    for result in get_args(CacheResult)
}
Loader = Callable[[], Awaitable[bytes | None]]
# What a lookup found: the result for the metric, and the raw value on a hit.
Lookup = tuple[CacheResult, bytes | None]


class UserCache:
    """Users serialized as JSON under `<prefix>:user:<id>`.

    The key prefix carries a version: bump CACHE_KEY_PREFIX when the cached shape
    changes and old entries are simply never read again.
    """

    def __init__(self, redis: RedisGateway, settings: Settings) -> None:
        self._redis = redis
        self._enabled = settings.cache_enabled
        self._prefix = f"{settings.cache_key_prefix}:user:"
        self._ttl = settings.cache_ttl_seconds
        self._jitter = settings.cache_ttl_jitter
        self._negative_ttl = settings.cache_negative_ttl_seconds
        self._lock_ttl_ms = settings.cache_lock_ttl_ms
        # Single flight within this worker: concurrent misses on one key share one load.
        self._inflight: dict[str, asyncio.Future[bytes | None]] = {}
        self._store_script = redis.client.register_script(_STORE_IF_LOCKED)

    def key(self, user_id: uuid.UUID) -> str:
        return f"{self._prefix}{user_id}"

    def _ttl_with_jitter(self) -> int:
        # Spread expiries so keys written together do not all expire together.
        spread = self._ttl * self._jitter
        return max(1, round(self._ttl + random.uniform(-spread, spread)))  # noqa: S311

    def prefetch_key(self, user_id: uuid.UUID) -> str | None:
        """The key to read ahead in another pipeline, or None when the cache is bypassed."""
        if not self._enabled or self._redis.breaker.is_open:
            return None
        return self.key(user_id)

    @staticmethod
    def prefetched(value: bytes | None) -> Lookup:
        return ("hit", value) if value is not None else ("miss", None)

    async def read_through(
        self, user_id: uuid.UUID, loader: Loader, prefetched: Lookup | None = None
    ) -> bytes | None:
        """The cached value, else the loader's (stored for next time); None means not found.

        `prefetched` is a lookup already made in the request's admission pipeline, which
        saves the cached read a Redis round trip of its own."""
        with record_span(tracer, "cache.get user") as span:
            result, value = prefetched or await self._lookup(self.key(user_id))
            set_constant_attributes(span, _RESULT_ATTRIBUTES[result])
        record_cache(result)
        if result == "hit":
            return None if value == MISSING else value
        # Even with Redis down, concurrent misses in this worker share one database load.
        return await self._load_once(self.key(user_id), loader, shared=result == "miss")

    async def _lookup(self, key: str) -> Lookup:
        if not self._enabled or self._redis.breaker.is_open:
            return "bypass", None
        try:
            value = await self._redis.get("cache", key)
        except RedisUnavailableError:
            return "error", None
        return self.prefetched(value)

    async def _load_once(self, key: str, loader: Loader, *, shared: bool) -> bytes | None:
        """One load per key at a time in this worker; `shared` also coordinates with other
        workers through Redis and stores the result there."""
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await (self._load_across_workers(key, loader) if shared else loader())
        except BaseException as error:
            future.set_exception(error)
            # Mark the exception retrieved: the waiters (if any) get it through shield.
            future.exception()
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

    async def _load_across_workers(self, key: str, loader: Loader) -> bytes | None:
        lock_key = f"{key}:lock"
        token = uuid.uuid4().hex.encode()

        async def lock_and_recheck() -> list[object]:
            # The miss may be stale by now (another load finished meanwhile): read the key
            # again in the same round trip that takes the lock.
            async with self._redis.client.pipeline(transaction=False) as pipe:
                pipe.set(lock_key, token, nx=True, px=self._lock_ttl_ms)
                pipe.get(key)
                results: list[object] = await pipe.execute()
                return results

        try:
            locked, current = await self._redis.call("lock", lock_and_recheck)
        except RedisUnavailableError:
            return await loader()
        if isinstance(current, bytes):
            if locked:
                await self._release(lock_key)
            return None if current == MISSING else current
        if not locked:
            # Another worker is loading this key: give it a moment, then load anyway
            # (correct either way; the wait only saves the database a duplicate query).
            for delay in _LOCK_WAIT_STEPS:
                await asyncio.sleep(delay)
                try:
                    cached = await self._redis.get("lock", key)
                except RedisUnavailableError:
                    break
                if cached is not None:
                    return None if cached == MISSING else cached
            return await loader()
        try:
            value = await loader()
        except BaseException:
            await self._release(lock_key)
            raise
        await self._store_if_still_locked(key, lock_key, token, value)
        return value

    async def _store_if_still_locked(
        self, key: str, lock_key: str, token: bytes, value: bytes | None
    ) -> None:
        ttl = self._ttl_with_jitter() if value is not None else self._negative_ttl
        payload = MISSING if value is None else value
        try:
            await self._redis.call(
                "cache",
                lambda: self._store_script(keys=[key, lock_key], args=[token, payload, ttl]),
            )
        except RedisUnavailableError:
            return  # the lock expires by itself after CACHE_LOCK_TTL_MS

    async def _release(self, lock_key: str) -> None:
        try:
            await self._redis.call("lock", lambda: self._redis.client.delete(lock_key))
        except RedisUnavailableError:
            return

    async def invalidate(self, user_id: uuid.UUID) -> None:
        """Drop the entry after a write has committed; a failure leaves it to expire by TTL."""
        if not self._enabled:
            return
        key = self.key(user_id)
        # Deleting the lock too stops a load that began before the write committed (and so
        # may hold the old row) from storing it afterwards.
        try:
            await self._redis.call("cache", lambda: self._redis.client.delete(key, f"{key}:lock"))
        except RedisUnavailableError:
            return
