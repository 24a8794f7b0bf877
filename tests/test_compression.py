"""FastGZipMiddleware answers exactly as Starlette's GZipMiddleware does, for every kind of
response and client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from app.api.compression import FastGZipMiddleware


async def small(_: Request) -> Response:
    return Response(b'{"id": 1}', media_type="application/json")


async def large(_: Request) -> Response:
    return Response(b'{"items": "' + b"x" * 4000 + b'"}', media_type="application/json")


async def encoded(_: Request) -> Response:
    return Response(b"y" * 4000, headers={"Content-Encoding": "br"})


async def partial(_: Request) -> Response:
    return PlainTextResponse("z" * 4000, status_code=206)


async def stream(_: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"w" * 2000

    return StreamingResponse(chunks(), media_type="text/plain")


async def empty(_: Request) -> Response:
    return Response(status_code=204)


ROUTES = [
    Route(f"/{endpoint.__name__}", endpoint)
    for endpoint in (small, large, encoded, partial, stream, empty)
]


def _app(middleware: type[GZipMiddleware]) -> GZipMiddleware:
    return middleware(Starlette(routes=ROUTES), minimum_size=1024)


async def _answer(app: GZipMiddleware, path: str, encoding: str | None) -> tuple[object, ...]:
    headers = {"Accept-Encoding": encoding} if encoding else {"Accept-Encoding": "identity"}
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return response.status_code, sorted(response.headers.multi_items()), raw


@pytest.mark.parametrize("path", ["/small", "/large", "/encoded", "/partial", "/stream", "/empty"])
@pytest.mark.parametrize("encoding", [None, "gzip, br", "br"])
async def test_same_answer_as_starlette(path: str, encoding: str | None) -> None:
    ours = await _answer(_app(FastGZipMiddleware), path, encoding)
    theirs = await _answer(_app(GZipMiddleware), path, encoding)
    assert ours == theirs


async def test_large_identity_answers_still_vary_on_accept_encoding() -> None:
    _, headers, _ = await _answer(_app(FastGZipMiddleware), "/large", None)
    assert ("vary", "Accept-Encoding") in headers
    _, headers, _ = await _answer(_app(FastGZipMiddleware), "/small", None)
    assert "vary" not in dict(headers)
