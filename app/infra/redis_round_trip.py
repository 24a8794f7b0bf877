"""A few Redis commands in one write and one read, on a pooled connection of a single server.

This is what a non-transactional pipeline does on the wire, without redis-py's Pipeline
object: admission runs it on every authenticated request, and the Pipeline's own work
(building and resetting the object, its command stack and response callbacks, the client
library's per-call bookkeeping) cost about as much CPU as the round trip itself. The pool,
the connections, their health checks and retry policy are the client's own, and so is the
length of their timeout.

The client's socket timeout bounds the whole round trip, as one deadline: its own send
keeps it in a task of its own (asyncio.wait_for) and each read in a timeout scope of its
own, a task, extra turns of the event loop and four timers per request.

A sampled request gets the span the Redis instrumentation would make for the same pipeline:
named after the commands, with the sanitized statement and the server's address.

It also keeps a few connections between round trips instead of handing each back to the pool.
A blocking pool's checkout and return (its condition, timeout, readiness probe of the socket
and release events) cost about a third as much CPU as the round trip itself. A connection is
kept only after every reply was read from it, so it is in step. A failed, cancelled or
disconnected one always goes back to the pool, which checks it. At most a quarter of the pool
is kept, so the client's other calls never wait on the connections kept here.

The commands are packed here, and on a hiredis connection their replies are taken from its
reader here: the client's packer checks and joins every argument in several steps, and its
read goes through three layers per reply (each with its own bookkeeping): together 7% of
the instructions of a cached read. What is sent and what is raised are the client's own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind
from redis import _parsers as redis_parsers
from redis._parsers import hiredis as redis_hiredis
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.observability.recorded_spans import ConstantAttributes, set_constant_attributes
from app.observability.tracing import record_span

Command = tuple[str | bytes | int, ...]
# Each command's name and length, and what a span of those commands is named and holds.
_Shape = tuple[tuple[str | bytes | int, int], ...]
_Described = tuple[str, ConstantAttributes]

_tracer = trace.get_tracer("user-service.redis")
_MAX_LINE: Final = 1000
# More command shapes than a service sends; a bound in case some caller makes them from data.
_SHAPES_KEPT: Final = 256


def _statement(commands: Sequence[Command]) -> str:
    # As the instrumentation sanitizes a pipeline: a line per command, its name and "?" per
    # argument, each line cut at 1000 characters.
    lines = []
    for command in commands:
        line = " ".join([str(command[0]), *("?" * (len(command) - 1))])
        lines.append(line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "...")
    return "\n".join(lines)


class RoundTrip:
    """Runs command batches on `client`'s pool; only for a plain single-server pool."""

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        self._pool = pool
        self._kept: list[Connection] = []
        self._keep = pool.max_connections // 4
        self._shapes: dict[_Shape, _Described] = {}
        options = pool.connection_kwargs
        # The server's attributes, as the instrumentation reads them from the pool: fixed.
        self._attributes: dict[str, Any] = {
            "db.system": "redis",
            "db.redis.database_index": options.get("db") or 0,
        }
        if "path" in options:
            self._attributes |= {"net.peer.name": options["path"], "net.transport": "other"}
        else:
            self._attributes |= {
                "net.peer.name": options.get("host", "localhost"),
                "net.peer.port": options.get("port", 6379),
                "net.transport": "ip_tcp",
            }

    @staticmethod
    def supports(client: Redis) -> bool:
        """A standalone server's pool; Sentinel and Cluster clients keep their pipelines,
        which follow failovers and slots."""
        return type(getattr(client, "connection_pool", None)) is BlockingConnectionPool

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Every command's reply, in order; a Redis error reply is raised, as a pipeline
        executed with raise_on_error does."""
        if not is_instrumentation_enabled():
            return await self._execute(commands)
        # A span's name and attributes depend only on the commands' names and lengths: the
        # few shapes a service sends are worked out once.
        shape = tuple([(command[0], len(command)) for command in commands])
        described = self._shapes.get(shape)
        if described is None:
            described = self._describe(shape, commands)
        name, attributes = described
        with record_span(_tracer, name, SpanKind.CLIENT) as span:
            if span.is_recording():
                set_constant_attributes(span, attributes)
            return await self._execute(commands)

    def _describe(self, shape: _Shape, commands: Sequence[Command]) -> _Described:
        attributes = ConstantAttributes(
            {
                "db.statement": _statement(commands),
                "db.redis.pipeline_length": len(commands),
                **self._attributes,
            }
        )
        described = (" ".join(str(command[0]) for command in commands), attributes)
        if len(self._shapes) >= _SHAPES_KEPT:
            self._shapes.clear()
        self._shapes[shape] = described
        return described

    async def _execute(self, commands: Sequence[Command]) -> list[Any]:
        kept = self._kept
        connection: Connection = (
            kept.pop() if kept else await self._pool.get_connection()  # type: ignore[no-untyped-call]
        )
        in_step = False
        try:
            # The connection's retry policy (one retry on a dropped connection) with the
            # pipeline's failure step: the connection is closed, and reopened by the retry.
            # A send or read that fails or is cancelled midway closes the connection itself
            # (the client library's own handling), so none goes back out of step.
            replies: list[Any] = await connection.retry.call_with_retry(
                lambda: self._send_and_read(connection, commands),
                lambda _error: connection.disconnect(),
            )
            in_step = True
            return replies
        finally:
            if in_step and len(kept) < self._keep and connection.is_connected:
                kept.append(connection)
            else:
                await self._pool.release(connection)

    async def release_kept(self) -> None:
        """Hand the kept connections back to the pool: before the pool drops its idle
        connections (after Redis restarted) or closes."""
        kept, self._kept = self._kept, []
        for connection in kept:
            await self._pool.release(connection)

    @staticmethod
    async def _send_and_read(connection: Connection, commands: Sequence[Command]) -> list[Any]:
        encoder = connection.encoder
        packed = [pack(commands, encoder.encoding, encoder.encoding_errors)]
        deadline = connection.socket_timeout
        if not (deadline and connection.is_connected and _CAN_WRITE_DIRECTLY):
            # Connecting, or no timeout to keep: the client's own send does both.
            await connection.send_packed_command(packed)
            return await _read_replies(connection, len(commands), None)
        try:
            # One deadline of the socket timeout's length for the whole round trip.
            async with asyncio.timeout(deadline):
                await connection.check_health()  # type: ignore[no-untyped-call]
                await _write(connection, packed)
                if _reads_directly(connection):
                    return await _read_from_reader(connection, len(commands))
                return await _read_replies(connection, len(commands), math.inf)
        except TimeoutError:
            # The send or a read was cancelled midway: it closed the connection itself.
            raise RedisTimeoutError(f"Timeout in a round trip to {_address(connection)}") from None


async def _write(connection: Connection, packed: list[bytes]) -> None:
    """The client's send without its timeout task, failing as the client's send fails."""
    try:
        await connection._send_packed_command(packed)
    except BaseException as error:
        await connection.disconnect(nowait=True)
        if isinstance(error, OSError):
            raise _connection_error(connection, "writing to", error) from error
        raise


async def _read_replies(
    connection: Connection, count: int, read_timeout: float | None
) -> list[Any]:
    """Every reply is read before an error reply is raised, as a pipeline does. The client
    reads with `read_timeout`: None for its socket timeout, math.inf for none of its own."""
    replies: list[Any] = []
    error: ResponseError | None = None
    for _ in range(count):
        try:
            replies.append(await connection.read_response(timeout=read_timeout))
        except ResponseError as reply_error:
            error = error or reply_error
    if error is not None:
        raise error
    return replies


def pack(commands: Sequence[Command], encoding: str, errors: str) -> bytes:
    """The commands as RESP arrays of bulk strings, byte for byte what the client's packer
    sends. A command's name is one word (every caller here sends one)."""
    parts: list[bytes] = []
    for command in commands:
        count = len(command)
        parts.append(_ARRAY_HEADS[count] if count < _KEPT_HEADS else b"*%d\r\n" % count)
        for argument in command:
            # The exact types first: they are what callers send, and the cheapest test.
            kind = type(argument)
            if kind is str:
                data = argument.encode(encoding, errors)  # type: ignore[union-attr]
            elif kind is bytes:
                data = argument
            elif kind is int:
                data = b"%d" % argument  # type: ignore[str-format]
            else:
                data = _encode_subclass(argument, encoding, errors)
            length = len(data)
            parts.append(_BULK_HEADS[length] if length < _KEPT_HEADS else b"$%d\r\n" % length)
            parts.append(data)
            parts.append(b"\r\n")
    return b"".join(parts)


# The heads of arrays and bulk strings of the sizes a request's commands have, written once:
# formatting each one took some 800 instructions, 15 times in a read's admission pipeline.
_KEPT_HEADS: Final = 512
_ARRAY_HEADS: Final = [b"*%d\r\n" % count for count in range(_KEPT_HEADS)]
_BULK_HEADS: Final = [b"$%d\r\n" % length for length in range(_KEPT_HEADS)]


def _encode_subclass(argument: object, encoding: str, errors: str) -> bytes:
    # As the client's encoder: bool is refused though it is an int, and so is any other type.
    if isinstance(argument, bytes):
        return bytes(argument)
    if isinstance(argument, str):
        return argument.encode(encoding, errors)
    if isinstance(argument, int) and not isinstance(argument, bool):
        return b"%d" % argument
    raise DataError(
        f"Invalid input of type: '{type(argument).__name__}'. "
        "Convert to a bytes, string, int or float first."
    )


def _reads_directly(connection: Connection) -> bool:
    parser = getattr(connection, "_parser", None)
    return _NOT_ENOUGH_DATA is not None and type(parser) is _HIREDIS_PARSER


async def _read_from_reader(connection: Connection, count: int) -> list[Any]:
    """`count` replies from the connection's hiredis reader, fed from its stream as the
    client's parser feeds it; failing as the client's read fails: a connection error or a
    cancel closes the connection, an error reply is raised once every reply was read. A
    RESP3 push message in between goes to the parser's handlers, as the client's read does."""
    parser: Any = connection._parser
    if not parser._connected:
        raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
    reader = parser._reader
    push_type = parser._hiredis_PushNotificationType
    replies: list[Any] = []
    error: ResponseError | None = None
    try:
        while len(replies) < count:
            reply = reader.gets()
            if reply is _NOT_ENOUGH_DATA:
                data = await parser._stream.read(parser._read_size)
                if not data:
                    raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
                reader.feed(data)
                continue
            if push_type is not None and isinstance(reply, push_type):
                await parser.handle_push_response(reply)
                continue
            if isinstance(reply, RedisConnectionError) or (
                isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError)
            ):
                raise reply if isinstance(reply, RedisConnectionError) else reply[0]
            if isinstance(reply, ResponseError):
                error = error or reply
            replies.append(reply)
    except BaseException as failure:
        await connection.disconnect(nowait=True)
        if isinstance(failure, OSError):
            raise _connection_error(connection, "reading from", failure) from failure
        raise
    if connection.health_check_interval:
        interval = connection.health_check_interval
        connection.next_health_check = asyncio.get_running_loop().time() + interval
    if error is not None:
        raise error
    return replies


def _connection_error(connection: Connection, action: str, error: OSError) -> RedisConnectionError:
    """A failed send or read as the client reports it, once the connection was closed."""
    return RedisConnectionError(f"Error while {action} {_address(connection)}: {error}")


def _address(connection: Connection) -> str:
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"


# The client's send, less its timeout task: a private method of the pinned client. Should a
# release drop it, round trips go through the client's own send again.
_CAN_WRITE_DIRECTLY: Final = callable(getattr(Connection, "_send_packed_command", None))
# The client's hiredis parser and its reader's "not enough data" marker: private names of the
# pinned client too. Without them, replies come through the client's own read.
_HIREDIS_PARSER: Final = getattr(redis_parsers, "_AsyncHiredisParser", None)
_NOT_ENOUGH_DATA: Final = getattr(redis_hiredis, "NOT_ENOUGH_DATA", None)
