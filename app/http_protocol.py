"""uvicorn's HTTP/1.1 protocol, answering the requests it refuses itself as problem+json,
and sending each response in one write.

A request the parser cannot read (control characters in a header, a malformed request line)
never reaches the app: uvicorn answers it with a text/plain 400 and no security headers.
This protocol answers the same refusal in the service's one error shape instead.

uvicorn writes a response's head and body with two send() calls; on loopback or a pod
network each costs about as much as the rest of a cached read. The writes of one event-loop
step are joined and sent once at the end of it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.errors import PROBLEM_MEDIA_TYPE, problem_body
from app.observability.request_context import SECURITY_HEADERS

# The request target is echoed as `instance` only when it is a plain path.
_PLAIN_PATH = re.compile(rb"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,512}$")


def malformed_request_response(target: bytes, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole HTTP/1.1 response to a request that could not be parsed."""
    request_id = uuid.uuid4().hex
    body = orjson.dumps(
        problem_body(
            status=400,
            slug="bad-request",
            title="Bad request",
            detail="The request is not valid HTTP/1.1 (malformed request line or header).",
            instance=target.decode("ascii") if _PLAIN_PATH.match(target) else "",
            request_id=request_id,
        )
    )
    headers = [
        *default_headers,
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-request-id", request_id.encode()),
        *((name.encode(), value.encode()) for name, value in SECURITY_HEADERS),
    ]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return STATUS_LINE[400] + head + b"\r\n" + body


class CoalescingTransport:
    """Collects writes and hands them to the real transport once, at the end of the current
    event-loop step (a `call_soon` callback runs before the loop polls again). Order is
    kept; closing flushes first; everything else is the real transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)  # type: ignore[arg-type]

    def send_400_response(self, msg: str) -> None:
        if self.cycle is not None and self.cycle.response_started:
            # The app already answered part of this message: a second response would only
            # corrupt the stream. Close it, as any HTTP/1.1 server must.
            self.transport.close()
            return
        target = self.url.split(b"?", 1)[0] if isinstance(self.url, bytes) else b""
        self.transport.write(malformed_request_response(target, self.server_state.default_headers))
        self.transport.close()
