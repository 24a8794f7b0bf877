"""Pure ASGI middleware: request id, timing and security headers, HTTP metrics, the access
log, trace-aware instrumentation and the last-resort 500.

One pure ASGI layer does all of it: BaseHTTPMiddleware would cost a task and a stream per
request, and every extra layer a coroutine call and a send wrapper.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Final

import structlog
from opentelemetry import context as otel_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import send_problem
from app.observability.current_span import current_span
from app.observability.http_metrics import EXCLUDED_HANDLERS, HttpMetrics
from app.observability.logging import access_line, bind_request_id
from app.observability.tracing import end_server_span, request_context, start_server_span

error_log = structlog.get_logger("app.error")

# Scrapes never get here: they arrive on the metrics port (metrics_port.py).
QUIET_PATHS: Final = frozenset({"/livez", "/readyz"})
_UNMETERED: Final = frozenset(EXCLUDED_HANDLERS)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# W3C trace context: version-traceid-parentid-flags, lower-case hex (version ff is invalid).
_TRACEPARENT = re.compile(rb"^(?!ff)[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_NO_TRACE = b"0" * 32
SECURITY_HEADERS: Final = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
)
_SECURITY_HEADER_BYTES: Final = tuple(
    (name.encode(), value.encode()) for name, value in SECURITY_HEADERS
)
_API_CSP: Final = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


def _read_headers(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, int]:
    """The request id to use and the declared body length, in one pass over the headers."""
    request_id = ""
    length = 0
    for name, value in headers:
        if name == b"x-request-id" and not request_id:
            candidate = value.decode("latin-1")
            request_id = candidate if _VALID_REQUEST_ID.match(candidate) else "-"
        elif name == b"content-length" and value.isdigit():
            length = int(value)
    if not request_id or request_id == "-":
        request_id = os.urandom(16).hex()
    return request_id, length


def _caller_trace_id(scope: Scope) -> bytes:
    """The trace id of an incoming `traceparent` when no span of ours continues it (trace
    export off): logs and X-Trace-Id still join the caller's trace."""
    for name, value in scope["headers"]:
        if name == b"traceparent":
            match = _TRACEPARENT.match(value.strip())
            if match and match.group(1) != _NO_TRACE:
                return match.group(1)
            return b""
    return b""


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        template: Callable[[Scope], str],
        metrics: HttpMetrics | None = None,
        tracing: bool = False,
    ) -> None:
        self.app = app
        # The route template of a request (e.g. /api/v1/users/{user_id}), known before the
        # router runs so the in-progress gauge can carry it; "none" when no route matches.
        self._template = template
        self._metrics = metrics
        self._tracing = tracing
        # Built after logging is configured, as a bound logger would be.
        self._access_line = access_line("app.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        request_id, request_bytes = _read_headers(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        bind_request_id(request_id)
        handler = self._template(scope)
        # Probes and scrapes are frequent and uninteresting: no spans for them.
        traced = self._tracing and path not in QUIET_PATHS
        span = start_server_span(scope, handler) if traced else None
        span_token = otel_context.attach(request_context(span)) if span else None
        span_context = (span or current_span()).get_span_context()
        # The ids of our own span, for the access line written while it is current.
        trace_ids: tuple[str, str] | None = None
        if span_context.is_valid:
            # %-formatting: an f-string's or format()'s spec costs twice as much.
            trace_hex = "%032x" % span_context.trace_id  # noqa: UP031
            trace_id = trace_hex.encode()
            if span is not None:
                trace_ids = (trace_hex, "%016x" % span_context.span_id)  # noqa: UP031
        else:
            trace_id = _caller_trace_id(scope)
            if trace_id:
                structlog.contextvars.bind_contextvars(trace_id=trace_id.decode())
        extra_headers = [(b"x-request-id", request_id.encode())]
        if trace_id:
            extra_headers.append((b"x-trace-id", trace_id))
        extra_headers.extend(_SECURITY_HEADER_BYTES)
        if not path.startswith(("/docs", "/redoc")):
            extra_headers.append(_API_CSP)
        metrics = self._metrics
        meter = metrics.route(method, handler) if metrics and handler not in _UNMETERED else None
        if meter is not None:
            meter.started()
        status = 500
        response_bytes = 0
        response_started = False
        failure: BaseException | None = None

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started, response_bytes
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                response_bytes = _content_length(headers)
                headers.extend(extra_headers)
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", b"app;dur=%.1f" % elapsed_ms))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            failure = error
            # Anything no handler turned into a problem: log it once with its stack,
            # answer a 500 that says nothing about the internals.
            error_log.exception("unhandled_error", path=path, method=method)
            if not response_started:
                await send_problem(
                    send_with_headers,
                    status=500,
                    slug="internal-error",
                    title="Internal server error",
                    detail="The server failed to handle this request; it has been logged.",
                    instance=path,
                    request_id=request_id,
                )
            status = 500
        finally:
            elapsed = time.perf_counter() - started
            if meter is not None and metrics is not None:
                metrics.finished(meter, status, request_bytes, response_bytes, elapsed)
            if path not in QUIET_PATHS:
                self._access_line(
                    method,
                    handler,
                    path,
                    status,
                    round(elapsed * 1000, 2),
                    scope["client"][0] if scope.get("client") else None,
                    trace_ids,
                )
            if span is not None:
                end_server_span(span, status, failure)
            if span_token is not None:
                otel_context.detach(span_token)
