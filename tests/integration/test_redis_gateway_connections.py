"""The gateway's connections to a standalone Redis, counted on the run's own redis-server:
closing the gateway closes them, and after a connection error none is left idle."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
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


def test_a_connection_closed_under_uvloop_is_redis_unavailable_not_a_crash() -> None:
    """uvloop, the servers' event loop, raises RuntimeError ("the handler is closed") for a
    write on a transport that has closed, where asyncio's own loop raises nothing. A Sentinel
    failover under load closed a connection that way between its check-out and its first
    write, and a PATCH answered 500. The pool's check at check-out cannot see a close that
    comes after it, so the write is made here on a connection closed just after check-out."""

    async def closed_mid_call() -> tuple[int, type[BaseException] | None]:
        gateway = _gateway()
        pool = gateway.client.connection_pool

        async def write_after_close() -> None:
            connection = await pool.get_connection()
            try:
                writer = connection._writer
                assert writer is not None
                writer.transport.close()  # the peer's close, arriving after the check-out
                await connection.send_command("PING")
            finally:
                await pool.release(connection)

        try:
            with pytest.raises(RedisUnavailableError) as unavailable:
                await gateway.call("cache", write_after_close)
            cause = unavailable.value.__cause__
            # The next call gets a fresh connection and closes the breaker's count again.
            assert await gateway.get("cache", "key") is None
            return gateway.breaker._failures, type(cause) if cause else None
        finally:
            await gateway.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        failures, cause = runner.run(closed_mid_call())
    assert cause is RuntimeError
    assert failures == 0


async def test_a_runtime_error_of_another_kind_is_not_taken_for_redis() -> None:
    gateway = _gateway()

    async def broken() -> None:
        raise RuntimeError("a bug in the caller")

    try:
        with pytest.raises(RuntimeError, match="a bug in the caller"):
            await gateway.call("cache", broken)
        assert gateway.breaker._failures == 0
    finally:
        await gateway.close()
