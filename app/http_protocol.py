"""uvicorn's HTTP/1.1 protocol, answering the requests it refuses itself as problem+json,
and sending each response in one write.

A request the parser cannot read (control characters in a header, a malformed request line)
never reaches the app: uvicorn answers it with a text/plain 400 and no security headers.
This protocol answers the same refusal in the service's one error shape instead.

uvicorn writes a response's head and body with two send() calls; on loopback or a pod
network each costs about as much as the rest of a cached read. A response's writes are
joined and sent once, as soon as the response is complete; a streamed one's at the end of
each event-loop step.

uvicorn checks every response header's name and value with a regular expression, against
response splitting. The service sends the same names and mostly the same values on every
response (the security headers, the content type, the date of this second), and the
searches took some 40,000 instructions of a cached read, 5% of it: each distinct name and
value is now checked once and its verdict remembered.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any, Final

import orjson
from uvicorn.protocols.http import httptools_impl
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
    """Collects writes and hands them to the real transport once: on flush(), or at the end
    of the current event-loop step (a `call_soon` callback) for writes no flush sent. Order
    is kept; closing flushes first; everything else is the real transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is pending now."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def is_closing(self) -> bool:
        # uvicorn asks on every response: through __getattr__ each call first failed the
        # ordinary lookup (an AttributeError made and caught).
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RememberedSearch(dict[bytes, bool]):
    """Stands in for one of uvicorn's compiled header patterns, of which it only calls
    search() and asks the truth of the answer: the same truth, remembered per distinct name or
    value, so that one seen before costs a dict lookup (a C call, `search` being this dict's
    own `__getitem__`). A bounded number of short ones are kept (request ids never repeat):
    the store is emptied when full."""

    __slots__ = ("pattern", "search")

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        super().__init__()
        self.pattern = pattern
        self.search = self.__getitem__

    def __missing__(self, text: bytes) -> bool:
        found = self.pattern.search(text) is not None
        if len(text) <= _KEPT_LENGTH:
            if len(self) >= _KEPT:
                self.clear()
            self[text] = found
        return found


_KEPT: Final = 1024
_KEPT_LENGTH: Final = 256


def remember_header_checks() -> None:
    """Put RememberedSearch in place of uvicorn's two header patterns (once per process)."""
    for name in ("HEADER_RE", "HEADER_VALUE_RE"):
        pattern = getattr(httptools_impl, name, None)
        if isinstance(pattern, re.Pattern):
            setattr(httptools_impl, name, RememberedSearch(pattern))


# uvicorn imports this module by name (the worker's `http` setting) before serving.
remember_header_checks()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    _coalescing: CoalescingTransport

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = self._coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        # The response is whole: sent now rather than at the end of the step. After a CPU
        # stall one step runs the continuations of every request that waited, and each
        # finished response would wait for all the others' work (a millisecond or more).
        self._coalescing.flush()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        if self.cycle is not None and self.cycle.response_started:
            # The app already answered part of this message: a second response would only
            # corrupt the stream. Close it, as any HTTP/1.1 server must.
            self.transport.close()
            return
        target = self.url.split(b"?", 1)[0] if isinstance(self.url, bytes) else b""
        self.transport.write(malformed_request_response(target, self.server_state.default_headers))
        self.transport.close()
