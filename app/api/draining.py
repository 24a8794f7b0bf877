"""Pure ASGI middleware: while the app drains after SIGTERM, responses close their connection.

A keep-alive connection still open when the server stops is closed under whatever request the
client sends at that moment, and the client sees a reset. Answering `Connection: close`
during the drain makes the client's next request open a new connection, which the load
balancer (kube-proxy, an ingress) sends to a replica that is still serving.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CLOSE = (b"connection", b"close")


class CloseWhileDrainingMiddleware:
    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        # app.state: the worker sets `draining` on SIGTERM (see app/worker.py).
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.state.draining:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            await send(message)

        await self.app(scope, receive, send_closing)
