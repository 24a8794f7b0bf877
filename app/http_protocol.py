"""uvicorn's HTTP/1.1 protocol, answering the requests it refuses itself as problem+json.

A request the parser cannot read (control characters in a header, a malformed request line)
never reaches the app: uvicorn answers it with a text/plain 400 and no security headers.
This protocol answers the same refusal in the service's one error shape instead.
"""

from __future__ import annotations

import re
import uuid

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


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        if self.cycle is not None and self.cycle.response_started:
            # The app already answered part of this message: a second response would only
            # corrupt the stream. Close it, as any HTTP/1.1 server must.
            self.transport.close()
            return
        target = self.url.split(b"?", 1)[0] if isinstance(self.url, bytes) else b""
        self.transport.write(malformed_request_response(target, self.server_state.default_headers))
        self.transport.close()
