"""Pure ASGI middleware that refuses requests for hosts not in TRUSTED_HOSTS (problem+json 400).

Probes are exempt: the kubelet addresses a pod by its IP, so a hardened host list must never
make a healthy pod unready. Scrapes arrive on the metrics port and never reach this check.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import send_problem
from app.observability.request_context import QUIET_PATHS


def host_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"host":
            host: str = value.decode("latin-1")
            # "[::1]:8000" -> "[::1]", "example.com:8000" -> "example.com"
            return host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return ""


class TrustedHostMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        hosts = [host.lower() for host in allowed_hosts]
        self._exact = frozenset(host for host in hosts if not host.startswith("*."))
        # "*.example.com" matches any subdomain of example.com, not example.com itself.
        self._suffixes = tuple(host[1:] for host in hosts if host.startswith("*."))

    def allows(self, host: str) -> bool:
        host = host.lower()
        return host in self._exact or (bool(self._suffixes) and host.endswith(self._suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or scope["path"] in QUIET_PATHS:
            await self.app(scope, receive, send)
            return
        if self.allows(host_of(scope)):
            await self.app(scope, receive, send)
            return
        await send_problem(
            send,
            status=400,
            slug="invalid-host",
            title="Invalid host",
            detail="The Host header names a host this service does not serve.",
            instance=scope["path"],
            request_id=scope.get("state", {}).get("request_id", ""),
        )
