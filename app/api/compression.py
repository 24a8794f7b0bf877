"""Starlette's GZip middleware with its commonest case made cheap: a small, complete response
to a client that does not take gzip passes straight through."""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware, IdentityResponder
from starlette.types import Message, Receive, Scope, Send


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            return b"gzip" in value
    return False


class FastGZipMiddleware(GZipMiddleware):
    """What a client receives is exactly what GZipMiddleware sends. Only a response that
    would pass its identity path unchanged (one body under `minimum_size`) skips the
    per-request responder and header parsing; every other response goes through it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _accepts_gzip(scope):
            await super().__call__(scope, receive, send)
            return
        start: Message | None = None
        responder: IdentityResponder | None = None

        async def send_small_directly(message: Message) -> None:
            nonlocal start, responder
            if responder is None:
                if message["type"] == "http.response.start" and start is None:
                    start = message
                    return
                if (
                    start is not None
                    and message["type"] == "http.response.body"
                    and not message.get("more_body", False)
                    and len(message.get("body", b"")) < self.minimum_size
                ):
                    await send(start)
                    await send(message)
                    return
                responder = IdentityResponder(
                    self.app, self.minimum_size, exclude_content_types=self.exclude_content_types
                )
                responder.send = send
                if start is not None:
                    await responder.send_with_compression(start)
            await responder.send_with_compression(message)

        await self.app(scope, receive, send_small_directly)
