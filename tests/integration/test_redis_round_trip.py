"""The single-server round trip admission runs on every request, against the run's own
redis-server: replies in order, and a connection that stays in step with its requests
through an error reply, a dropped connection and a cancelled read."""

from __future__ import annotations

import asyncio
import enum
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.infra import redis_round_trip
from app.infra.redis_round_trip import Command, RoundTrip, pack
from app.infra.redis_topology import connect_standalone
from app.settings import Settings
from tests.support.isolation import redis_url
from tests.support.redis_server import RedisServer

URL = redis_url(11)


def _settings(max_connections: int = 64, url: str = URL, **overrides: Any) -> Settings:
    return Settings(
        APP_ENV="test",
        DATABASE_URL="postgresql+asyncpg://unused@127.0.0.1/unused",
        REDIS_URL=url,
        REDIS_MAX_CONNECTIONS=max_connections,
        **overrides,
    )


@pytest.fixture(params=[1, 8], ids=["pool-of-one", "kept-connections"])
async def one_connection(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RoundTrip, Redis]]:
    """A RoundTrip over the service's own standalone client, and a separate client to look
    and interfere. Every call reuses one connection: with a pool of one it is the pool's, with
    a pool of eight the one the RoundTrip keeps between calls."""
    client = connect_standalone(_settings(request.param))
    other = Redis.from_url(URL)
    await other.flushdb()
    assert RoundTrip.supports(client)
    yield RoundTrip(client), other
    await client.aclose()
    await other.flushdb()
    await other.aclose()


async def test_replies_come_in_order(one_connection: tuple[RoundTrip, Redis]) -> None:
    round_trip, other = one_connection
    await other.set("present", b"value")
    replies = await round_trip.execute(
        [
            ("MGET", "present", "absent"),
            ("INCRBY", "counter", 1),
            ("PEXPIREAT", "counter", 32503680000000),
        ]
    )
    assert replies == [[b"value", None], 1, 1]
    assert await other.pttl("counter") > 0


async def test_an_error_reply_is_raised_after_every_reply_is_read(
    one_connection: tuple[RoundTrip, Redis],
) -> None:
    round_trip, other = one_connection
    await other.set("text", b"not a number")
    with pytest.raises(ResponseError):
        await round_trip.execute([("INCRBY", "text", 1), ("SET", "after", "written")])
    # The command after the failing one still ran, and the next call on the same connection
    # gets its own reply, not a leftover one.
    assert await other.get("after") == b"written"
    assert await round_trip.execute([("GET", "text")]) == [b"not a number"]


async def test_a_dropped_connection_is_replaced_once(
    one_connection: tuple[RoundTrip, Redis],
) -> None:
    round_trip, other = one_connection
    assert await round_trip.execute([("INCRBY", "n", 1)]) == [1]
    killed = await other.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert killed >= 1
    assert await round_trip.execute([("INCRBY", "n", 1)]) == [2]


async def test_a_cancelled_read_leaves_no_reply_behind(
    one_connection: tuple[RoundTrip, Redis],
) -> None:
    round_trip, other = one_connection
    await other.set("k", b"mine")
    # BLPOP blocks in the server: the call is cancelled while its reply is outstanding.
    blocked = asyncio.create_task(round_trip.execute([("BLPOP", "queue", 5)]))
    for _ in range(1000):
        if await _blocked_clients(other):
            break
        await asyncio.sleep(0.01)
    assert await _blocked_clients(other), "BLPOP never blocked"
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    # Had the connection gone back to the pool in mid-request, this push would answer the
    # abandoned BLPOP on it, and the GET below would read that reply instead of its own.
    await other.rpush("queue", b"late")
    assert await round_trip.execute([("GET", "k")]) == [b"mine"]


async def _blocked_clients(client: Redis) -> int:
    info = await client.info("clients")
    return int(info["blocked_clients"])


async def test_sequential_round_trips_check_out_of_the_pool_once() -> None:
    client = connect_standalone(_settings(8))
    pool = client.connection_pool
    checkouts = 0
    checkout = pool.get_connection

    async def counted() -> object:
        nonlocal checkouts
        checkouts += 1
        return await checkout()

    pool.get_connection = counted  # type: ignore[method-assign]
    round_trip = RoundTrip(client)
    try:
        for number in range(1, 51):
            assert await round_trip.execute([("INCRBY", "kept", 1)]) == [number]
        assert checkouts == 1
    finally:
        await round_trip.release_kept()
        await client.delete("kept")
        await client.aclose()


async def test_at_most_a_quarter_of_the_pool_is_kept() -> None:
    client = connect_standalone(_settings(8))
    round_trip = RoundTrip(client)
    try:
        # Six round trips at once take six connections; two of them are kept afterwards.
        await asyncio.gather(*(round_trip.execute([("PING",)]) for _ in range(6)))
        pool = client.connection_pool
        taken = [
            await asyncio.wait_for(pool.get_connection(), timeout=5)  # type: ignore[no-untyped-call]
            for _ in range(6)
        ]
        # The pool's eight are now all out: two kept, six taken here.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.get_connection(), timeout=0.2)  # type: ignore[no-untyped-call]
        for connection in taken:
            await pool.release(connection)
        await round_trip.release_kept()
        again = [await asyncio.wait_for(pool.get_connection(), timeout=5) for _ in range(8)]  # type: ignore[no-untyped-call]
        for connection in again:
            await pool.release(connection)
    finally:
        await client.aclose()


async def test_a_round_trip_on_a_kept_connection_starts_no_task(
    one_connection: tuple[RoundTrip, Redis],
) -> None:
    """The client's own send waits in a task of its own (asyncio.wait_for) to keep its socket
    timeout: a task and extra turns of the loop on every request.

    The suite's tests share one event loop, so a task another test left running (an app's
    periodic Redis work) may start one in the same moment: only tasks working on this round
    trip's connections count."""
    round_trip, _ = one_connection
    assert await round_trip.execute([("PING",)]) == [b"PONG"]  # connected, in step
    pool = round_trip._pool
    ours = {*round_trip._kept, *pool._available_connections, *pool._in_use_connections}
    assert ours, "the round trip's connection is the pool's or kept"
    loop = asyncio.get_running_loop()
    started: list[object] = []

    def counting(
        loop: asyncio.AbstractEventLoop, coroutine: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        # A coroutine not yet started holds its arguments: `self` names the connection.
        frame = getattr(coroutine, "cr_frame", None)
        if frame is None or frame.f_locals.get("self") in ours:
            started.append(coroutine)
        return asyncio.Task(coroutine, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        replies = await round_trip.execute([("INCRBY", "tasks", 1), ("GET", "tasks")])
    finally:
        loop.set_task_factory(None)
    assert replies == [1, b"1"]
    assert started == []


class _Key(enum.StrEnum):
    SESSION = "us:{s}:session"


def test_commands_are_packed_byte_for_byte_as_the_client_packs_them() -> None:
    commands: list[Command] = [
        ("MGET", "us:{s}:session", "us:{s}:lease", "caf\u00e9 \u2603"),
        ("INCRBY", "counter", -17),
        ("SET", b"binary\r\n\x00key", b"", "EX", 0),
        ("PEXPIREAT", "counter", 32503680000000),
        ("GET", _Key.SESSION),  # a str subclass, encoded as its text
        ("SET", "long", b"v" * 600),  # lengths past the heads written in advance
        ("MGET", *(f"key{number}" for number in range(600))),
    ]
    connection = Connection()
    assert pack(commands, "utf-8", "strict") == b"".join(connection.pack_commands(commands))


@pytest.mark.parametrize("argument", [True, 1.5, None], ids=["bool", "float", "none"])
def test_an_argument_the_client_would_refuse_is_refused_by_type(argument: object) -> None:
    with pytest.raises(DataError, match=type(argument).__name__):
        pack([("SET", "key", argument)], "utf-8", "strict")  # type: ignore[list-item]


async def test_replies_are_taken_from_the_hiredis_reader_not_the_clients_read(
    one_connection: tuple[RoundTrip, Redis],
) -> None:
    """On the service's own client the kept connection's replies never go through the
    client's per-reply read: the three layers it costs are what this module saves."""
    round_trip, other = one_connection
    await other.set("here", b"1")
    assert await round_trip.execute([("PING",)]) == [b"PONG"]  # connected, in step

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the client's read_response was used")

    connection = round_trip._kept[-1] if round_trip._kept else None
    if connection is None:  # the pool of one: its only connection
        connection = await round_trip._pool.get_connection()  # type: ignore[no-untyped-call]
        await round_trip._pool.release(connection)
    assert type(connection._parser).__name__ == "_AsyncHiredisParser"
    connection.read_response = refused  # type: ignore[method-assign]
    try:
        replies = await round_trip.execute([("GET", "here"), ("INCRBY", "here", 2), ("PING",)])
    finally:
        del connection.read_response
    assert replies == [b"1", 3, b"PONG"]


async def test_a_push_message_between_replies_is_not_taken_for_a_reply(
    one_connection: tuple[RoundTrip, Redis],
) -> None:
    """RESP3 (the client's default) lets the server push messages on any connection, here an
    invalidation of a tracked key: it goes to the client's push handling, and the replies
    that follow it are the commands' own."""
    round_trip, other = one_connection
    await other.set("tracked", b"old")
    assert await round_trip.execute([("CLIENT", "TRACKING", "ON")]) == [b"OK"]
    assert await round_trip.execute([("GET", "tracked")]) == [b"old"]
    await other.set("tracked", b"new")  # the server pushes an invalidation to the tracker
    assert await round_trip.execute([("GET", "tracked"), ("PING",)]) == [b"new", b"PONG"]


async def test_each_shape_of_commands_is_described_by_its_own_span(
    one_connection: tuple[RoundTrip, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Span names and statements are kept per shape (names and lengths): a shape seen again
    gets its own description back, never another shape's."""
    round_trip, _ = one_connection
    seen: list[tuple[str, dict[str, Any]]] = []

    class Recording:
        def is_recording(self) -> bool:
            return True

        def set_attributes(self, attributes: dict[str, Any]) -> None:
            seen[-1][1].update(attributes)

    @contextmanager
    def recording(_tracer: object, name: str, _kind: object) -> Iterator[Recording]:
        seen.append((name, {}))
        yield Recording()

    monkeypatch.setattr(redis_round_trip, "record_span", recording)
    monkeypatch.setattr(redis_round_trip, "is_instrumentation_enabled", lambda: True)
    shapes: list[list[Command]] = [
        [("GET", "a")],
        [("GET", "a"), ("PING",)],
        [("GET", "a")],
        [("MGET", "a", "b")],
        [("MGET", "a")],  # the same name, another length
        [("GET", "a"), ("PING",)],
    ]
    for commands in shapes:
        await round_trip.execute(commands)
    described = [
        (name, attributes["db.statement"], attributes["db.redis.pipeline_length"])
        for name, attributes in seen
    ]
    assert described == [
        ("GET", "GET ?", 1),
        ("GET PING", "GET ?\nPING", 2),
        ("GET", "GET ?", 1),
        ("MGET", "MGET ? ?", 1),
        ("MGET", "MGET ?", 1),
        ("GET PING", "GET ?\nPING", 2),
    ]


async def test_a_frozen_server_fails_the_round_trip_within_its_socket_timeout() -> None:
    server = RedisServer()
    server.start()
    client = connect_standalone(_settings(url=server.url, REDIS_SOCKET_TIMEOUT=0.3))
    round_trip = RoundTrip(client)
    assert server.process is not None
    try:
        assert await round_trip.execute([("INCRBY", "n", 1)]) == [1]
        server.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await round_trip.execute([("INCRBY", "n", 1), ("GET", "n")])
        waited = time.monotonic() - started
        assert 0.25 <= waited < 1.5, waited
        server.process.send_signal(signal.SIGCONT)
        # The timed-out connection was closed, not kept: a new one gets the next replies.
        assert await round_trip.execute([("INCRBY", "n", 1), ("GET", "n")]) == [3, b"3"]
    finally:
        server.process.send_signal(signal.SIGCONT)
        await round_trip.release_kept()
        await client.aclose()
        server.kill()
