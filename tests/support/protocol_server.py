"""A uvicorn server speaking the service's HTTP/1.1 protocol (app/http_protocol.py)."""

from __future__ import annotations

import uvicorn
from uvicorn._types import ASGIApplication

from app.http_protocol import ProblemHttpToolsProtocol


def protocol_server(app: ASGIApplication, port: int) -> uvicorn.Server:
    """`app` served on 127.0.0.1:`port` by uvicorn with the service's protocol, quietly."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http=ProblemHttpToolsProtocol,
            lifespan="off",
            log_level="critical",
        )
    )
