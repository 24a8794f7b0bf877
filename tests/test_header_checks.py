"""uvicorn's response-header checks, remembered per distinct name and value: the same
verdicts as its patterns, and a header that would split the response is still refused by a
real server, however often it is sent."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.protocols.http import httptools_impl

from app.http_protocol import RememberedSearch
from tests.support.protocol_server import protocol_server
from tests.support.service import free_port

NAMES = [b"content-type", b"x-request-id", b"bad name", b"bad:name", b"bad\x00", b"", b"x" * 300]
VALUES = [
    b"application/json",
    b"max-age=63072000; includeSubDomains",
    b"tab\tinside",
    b"split\r\ninjected: yes",
    b"nul\x00",
    b"",
    b"v" * 300,
    b"v" * 300 + b"\n",
]


def test_the_verdicts_are_the_patterns_own_asked_once_or_again() -> None:
    for name, texts in (("HEADER_RE", NAMES), ("HEADER_VALUE_RE", VALUES)):
        remembered = getattr(httptools_impl, name)
        assert isinstance(remembered, RememberedSearch)
        pattern = remembered.pattern
        checked = RememberedSearch(pattern)
        for _ in range(2):
            for text in texts:
                assert bool(checked.search(text)) == bool(pattern.search(text)), (name, text)


def test_the_store_is_bounded() -> None:
    checked = RememberedSearch(re.compile(b"[\r\n]"))
    for number in range(5000):
        assert not checked.search(b"request-%d" % number)
    assert checked.search(b"bad\r\n")
    store: dict[bytes, bool] = checked.search.__self__  # type: ignore[attr-defined]
    assert 0 < len(store) <= 1024


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    value = b"fine" if scope["path"] == "/fine" else b"split\r\ninjected: yes"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-echo", value)]})
    await send({"type": "http.response.body", "body": b"body"})


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    port = free_port()
    server = protocol_server(_app, port)
    serving = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    yield port
    server.should_exit = True
    await asyncio.wait_for(serving, 10)


async def _answer(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_a_splitting_header_is_refused_every_time(server_port: int) -> None:
    for _ in range(3):
        fine = await _answer(server_port, "/fine")
        assert fine.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nx-echo: fine\r\n" in fine
        split = await _answer(server_port, "/split")
        assert b"injected" not in split
        assert not split.startswith(b"HTTP/1.1 200 ")
