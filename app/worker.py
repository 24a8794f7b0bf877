"""The gunicorn worker: uvicorn's, plus a drain phase in which /readyz fails before we stop."""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Any, ClassVar

from uvicorn.server import Server
from uvicorn_worker import UvicornWorker


class DrainingServer(Server):
    """On the first SIGTERM, mark the app draining (readiness answers 503) and keep serving
    for SHUTDOWN_DRAIN_SECONDS so load balancers stop routing here, then shut down as
    uvicorn does: stop accepting, finish in-flight requests, run the lifespan shutdown."""

    def __init__(self, *args: Any, app_state: Any, drain_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app_state = app_state
        self._drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._app_state.draining or self._drain_seconds <= 0:
            self._app_state.draining = True
            super().handle_exit(sig, frame)
            return
        self._app_state.draining = True
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(
            loop.call_later, self._drain_seconds, super().handle_exit, sig, frame
        )


class DrainingUvicornWorker(UvicornWorker):  # type: ignore[misc]  # untyped base
    # The parser's own 400s are problem+json too (see app/http_protocol.py).
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",
        "http": "app.http_protocol:ProblemHttpToolsProtocol",
        "lifespan": "on",
    }

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        state = self.wsgi.state
        server = DrainingServer(
            config=self.config,
            app_state=state,
            drain_seconds=state.settings.shutdown_drain_seconds,
        )
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            raise SystemExit(3)  # gunicorn's WORKER_BOOT_ERROR: the arbiter stops retrying
