"""Serves /metrics on its own port, ahead of everything else; the public port never does.

gunicorn listens on the public address and on METRICS_PORT; each request says which socket
it came in on (scope["server"]). Scrapes stay out of the access log, the host check and the
HTTP metrics, and an Ingress routed to the public port cannot expose them.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import send_problem
from app.observability.http_metrics import metrics_text


class MetricsPortMiddleware:
    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "http" or not server or server[1] != self.port:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and scope["method"] in {"GET", "HEAD"}:
            body = metrics_text()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", CONTENT_TYPE_LATEST.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
            )
            return
        await send_problem(
            send,
            status=404,
            slug="not-found",
            title="Not found",
            detail="The metrics port serves /metrics only.",
            instance=scope["path"],
            request_id="",
        )
