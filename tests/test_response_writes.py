"""How the service's HTTP protocol hands responses to the socket: a response's writes joined
into one, and a finished response sent at once, not after whatever else the event loop's
step still runs (after a CPU stall one step holds the continuations of many requests)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.http_protocol import CoalescingTransport
from tests.support.protocol_server import protocol_server
from tests.support.service import free_port

# How long the app keeps the event loop busy after its response is complete.
BUSY_SECONDS = 0.6


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_the_writes_of_one_step_go_out_as_one() -> None:
    recording = RecordingTransport()
    coalescing = CoalescingTransport(recording, asyncio.get_running_loop())
    coalescing.write(b"head\r\n\r\n")
    coalescing.writelines([b"bo", b"dy"])
    assert recording.writes == []
    await asyncio.sleep(0)
    assert recording.writes == [b"head\r\n\r\nbody"]
    coalescing.write(b"last")
    coalescing.close()
    assert recording.writes == [b"head\r\n\r\nbody", b"last"]
    assert recording.closed


async def test_a_flush_sends_what_is_pending_at_once_and_only_once() -> None:
    recording = RecordingTransport()
    coalescing = CoalescingTransport(recording, asyncio.get_running_loop())
    coalescing.write(b"head")
    coalescing.write(b"body")
    coalescing.flush()
    assert recording.writes == [b"headbody"]
    await asyncio.sleep(0)  # the step's own flush finds nothing left
    assert recording.writes == [b"headbody"]


async def _busy_after_answering(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b"answered"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
    # Work that follows the response in the same step, as other requests' continuations do
    # after a stall: it must not hold the finished response back.
    time.sleep(BUSY_SECONDS)  # noqa: ASYNC251  # blocking the loop is the point


@pytest.fixture
def busy_server_port() -> Iterator[int]:
    port = free_port()
    server = protocol_server(_busy_after_answering, port)
    # A loop of its own: the app blocks it on purpose, and the client must keep running.
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive()


def _read_response(client: socket.socket) -> bytes:
    answer = b""
    while not answer.endswith(b"answered"):
        chunk = client.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def test_a_finished_response_leaves_before_the_rest_of_the_step(busy_server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", busy_server_port), timeout=10) as client:
        for _ in range(2):  # the first request on a connection and one kept alive
            started = time.monotonic()
            client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            answer = _read_response(client)
            waited = time.monotonic() - started
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert answer.endswith(b"\r\n\r\nanswered"), answer
            assert waited < BUSY_SECONDS / 2, f"the response waited {waited:.3f} s"
            time.sleep(BUSY_SECONDS)  # the server's step ends before the next request
