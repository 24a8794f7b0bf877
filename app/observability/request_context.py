"""Pure ASGI middleware: request id, timing headers, security headers, access log, last-resort 500.

Pure ASGI rather than BaseHTTPMiddleware: the latter costs a task and a stream per request.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Final

import structlog
from opentelemetry import trace
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import send_problem

access_log = structlog.get_logger("app.access")
error_log = structlog.get_logger("app.error")

QUIET_PATHS: Final = frozenset({"/livez", "/readyz", "/metrics"})
# Keyed by id(): routes live as long as the app and are not hashable.
_TEMPLATES: dict[int, str] = {}
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
_API_CSP: Final = ("content-security-policy", "default-src 'none'; frame-ancestors 'none'")


def _route_template(scope: Scope) -> str:
    """The matched route's full template (e.g. /api/v1/users/{user_id}), worked out once per
    route and remembered; "none" when no route matched."""
    route = scope.get("route")
    if route is None:
        return "none"
    template: str | None = _TEMPLATES.get(id(route))
    if template is None:
        template = get_route_name(Request(scope), should_include_root_path=False) or "none"
        _TEMPLATES[id(route)] = template
    return template


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _caller_trace_id(scope: Scope) -> str | None:
    """The trace id of an incoming `traceparent` when no span of ours continues it (trace
    export off): logs and X-Trace-Id still join the caller's trace."""
    for name, value in scope["headers"]:
        if name == b"traceparent":
            match = _TRACEPARENT.match(value.strip())
            if match and match.group(1) != _NO_TRACE:
                return match.group(1).decode()
            return None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            trace_id: str | None = format(span_context.trace_id, "032x")
        else:
            trace_id = _caller_trace_id(scope)
            if trace_id:
                structlog.contextvars.bind_contextvars(trace_id=trace_id)
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append("x-request-id", request_id)
                if trace_id:
                    headers.append("x-trace-id", trace_id)
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers.append("server-timing", f"app;dur={elapsed_ms:.1f}")
                for name, value in SECURITY_HEADERS:
                    headers.append(name, value)
                if not path.startswith(("/docs", "/redoc")):
                    headers.append(*_API_CSP)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Anything no handler turned into a problem: log it once with its stack,
            # answer a 500 that says nothing about the internals.
            error_log.exception("unhandled_error", path=path, method=scope["method"])
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
            if path not in QUIET_PATHS:
                access_log.info(
                    "request",
                    method=scope["method"],
                    route=_route_template(scope),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    client=scope["client"][0] if scope.get("client") else None,
                )
