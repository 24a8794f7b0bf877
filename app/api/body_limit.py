"""Pure ASGI middleware that refuses bodies over MAX_BODY_BYTES with 413 before any parsing."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import send_problem


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages already read first, then the client's own."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_body_bytes:
                    await self._reject(scope, send)
                    return
                await self.app(scope, receive, send)
                return
        if scope["method"] in {"GET", "HEAD", "OPTIONS", "DELETE"}:
            await self.app(scope, receive, send)
            return
        # A chunked body has no length up front. Buffer it (it is bounded by the limit)
        # and reject as soon as it passes the limit, before the app parses anything;
        # raising from inside the app instead would surface as FastAPI's generic 400.
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                await self._reject(scope, send)
                return
            if not message.get("more_body", False):
                break

        await self.app(scope, replaying(buffered, receive), send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        await send_problem(
            send,
            status=413,
            slug="body-too-large",
            title="Request body too large",
            detail=f"The request body exceeds {self.max_body_bytes} bytes.",
            instance=scope["path"],
            request_id=scope.get("state", {}).get("request_id", ""),
            headers=((b"connection", b"close"),),
        )
