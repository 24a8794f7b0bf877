"""The gateway's connections to a standalone Redis, counted on the run's own redis-server:
closing the gateway closes them, and after a connection error none is left idle."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from app.infra.redis import RedisGateway, RedisUnavailableError, create_redis
from app.settings import Settings
from tests.support.isolation import redis_url

DB = 12
URL = redis_url(DB)


def _gateway() -> RedisGateway:
    return create_redis(
        Settings(
            APP_ENV="test",
            DATABASE_URL="postgresql+asyncpg://unused@127.0.0.1/unused",
            REDIS_URL=URL,
            REDIS_MAX_CONNECTIONS=8,
        )
    )


async def test_closing_the_gateway_closes_its_connections() -> None:
    gateway = _gateway()
    other = Redis.from_url(URL)
    try:
        await asyncio.gather(*(gateway.get("cache", f"key-{n}") for n in range(3)))
        await gateway.call("cache", lambda: gateway.batch([("PING",)]))
        assert await _connections(other) >= 1
        await gateway.close()
        assert await _eventually_connections(other, 0) == 0
    finally:
        await other.aclose()


async def test_a_redis_restart_drops_the_kept_connections_too() -> None:
    """After a connection error the gateway drops the pool's idle connections at once: the
    kept ones are among them, so no request meets a dead one later."""
    gateway = _gateway()
    other = Redis.from_url(URL)
    try:
        await gateway.call("cache", lambda: gateway.batch([("PING",)]))
        assert await _connections(other) == 1  # the kept one

        async def failing() -> None:
            raise RedisConnectionError("connection reset")

        with pytest.raises(RedisUnavailableError):
            await gateway.call("cache", failing)
        assert await _eventually_connections(other, 0) == 0
    finally:
        await gateway.close()
        await other.aclose()


async def _connections(client: Redis) -> int:
    """Connections to this file's database other than `client`'s own."""
    own = await client.client_id()
    listed = await client.client_list()
    return sum(1 for entry in listed if entry["db"] == str(DB) and int(entry["id"]) != own)


async def _eventually_connections(client: Redis, expected: int) -> int:
    """The count once it reaches `expected`, or after 5 s: the server sees a close a moment
    after the client makes it."""
    for _ in range(100):
        count = await _connections(client)
        if count == expected:
            return count
        await asyncio.sleep(0.05)
    return await _connections(client)
