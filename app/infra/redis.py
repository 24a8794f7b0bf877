"""The Redis client, and a circuit breaker so a sick Redis costs requests nothing for a while."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from app.infra.embedded import require_embedded_extra
from app.infra.redis_round_trip import Command, RoundTrip
from app.infra.redis_topology import connect_cluster, connect_sentinel, connect_standalone
from app.observability.metrics import REDIS_BREAKER_OPEN, RedisComponent, record_redis_error
from app.settings import Settings

T = TypeVar("T")
log = structlog.get_logger("app.redis")


class RedisUnavailableError(Exception):
    """Redis could not answer: breaker open, connection refused, or timed out."""


class CircuitBreaker:
    """Opens after `threshold` consecutive failures and stays open for `cooldown` seconds.

    After the cool-down the next call goes through as a trial: success closes the breaker,
    failure opens it again at once. State is per worker process, which is what matters:
    each worker stops waiting on Redis by itself.
    """

    def __init__(self, threshold: int, cooldown_seconds: float) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._failures = 0
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self._open_until > time.monotonic()

    def record_success(self) -> None:
        if self._failures:
            if self._open_until:
                log.info("redis_breaker_closed")
            self._failures = 0
            self._open_until = 0.0
            REDIS_BREAKER_OPEN.set(0)

    def record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            if not self.is_open:
                log.warning("redis_breaker_opened", cooldown_seconds=self._cooldown)
            self._open_until = time.monotonic() + self._cooldown
            REDIS_BREAKER_OPEN.set(1)


def _closed_transport(error: RuntimeError) -> bool:
    """A write on a connection the peer has just closed: uvloop raises this RuntimeError
    where asyncio's own loop raises nothing (a known uvloop behaviour), and redis-py passes it
    on. It is a lost connection, as during a Sentinel failover, not a bug of the caller."""
    return str(error).endswith("the handler is closed")


class RedisGateway:
    """Every Redis call of the service goes through here: breaker, error metrics, one error type."""

    def __init__(self, client: Redis, breaker: CircuitBreaker, *, embedded: bool) -> None:
        self.client = client
        self.breaker = breaker
        self.embedded = embedded
        self._round_trip = RoundTrip(client) if RoundTrip.supports(client) else None

    async def call(self, component: RedisComponent, operation: Callable[[], Awaitable[T]]) -> T:
        if self.breaker.is_open:
            raise RedisUnavailableError("circuit breaker open")
        try:
            result = await operation()
        except (TimeoutError, RedisError, OSError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and not _closed_transport(error):
                raise
            record_redis_error(component)
            self.breaker.record_failure()
            if isinstance(error, RedisConnectionError | RuntimeError):
                # After a Redis restart every idle pooled connection is dead; drop them all
                # now rather than failing one request per dead connection.
                await self._drop_idle_connections()
            raise RedisUnavailableError(type(error).__name__) from error
        self.breaker.record_success()
        return result

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        """`commands` in one round trip, as a non-transactional pipeline runs them; call it
        inside `call`. Use the replies of reads and counts, not of commands a client library
        would reshape (PEXPIREAT's 1 may come back as True)."""
        if self._round_trip is not None:
            return await self._round_trip.execute(commands)
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute()
            return replies

    async def get(self, component: RedisComponent, key: str) -> bytes | None:
        value = await self.call(component, lambda: self.client.get(key))
        # decode_responses is off on every client made here: values come back as bytes.
        return cast(bytes | None, value)

    async def _drop_idle_connections(self) -> None:
        # A cluster client has a pool per node and replaces dead ones itself on the next call.
        pool = getattr(self.client, "connection_pool", None)
        if pool is None:
            return
        try:
            if self._round_trip is not None:
                await self._round_trip.release_kept()
            await pool.disconnect(inuse_connections=False)
        except (RedisError, OSError):
            return

    async def close(self) -> None:
        if self._round_trip is not None:
            await self._round_trip.release_kept()
        await self.client.aclose()


def redis_configured(settings: Settings) -> bool:
    """Whether a Redis server is named (a URL, Sentinels or Cluster nodes); without one the
    service runs an in-process Redis of its own."""
    return bool(settings.redis_dsn or settings.redis_sentinels or settings.redis_cluster_nodes)


def create_redis(settings: Settings) -> RedisGateway:
    breaker = CircuitBreaker(
        settings.redis_breaker_failures, settings.redis_breaker_cooldown_seconds
    )
    if not redis_configured(settings):
        # Embedded development mode: an in-process Redis (with Lua) so every code path is
        # the same one production runs; the state lives and dies with this worker.
        require_embedded_extra("fakeredis", "REDIS_URL")
        from fakeredis import FakeAsyncRedis

        return RedisGateway(FakeAsyncRedis(), breaker, embedded=True)
    if settings.redis_sentinels:
        return RedisGateway(connect_sentinel(settings), breaker, embedded=False)
    if settings.redis_cluster_nodes:
        return RedisGateway(connect_cluster(settings), breaker, embedded=False)
    return RedisGateway(connect_standalone(settings), breaker, embedded=False)
