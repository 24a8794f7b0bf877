"""The service's FastAPI class: FastAPI's own middleware stack, with the route dispatcher in the
router's place at its centre (see dispatch.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from app.api.dispatch import RouteDispatch, RouteTable


class ServiceApp(FastAPI):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # One table per app: the middleware asks it for a request's template (and the route),
        # the dispatcher runs that route.
        self.route_table = RouteTable(self.router)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        layer: Any = stack
        while True:
            inner = getattr(layer, "app", None)
            if inner is self.router:
                layer.app = RouteDispatch(self.router, self.route_table)
                return stack
            if inner is None:
                # FastAPI's stack changed shape: fail at start, not on some request.
                raise RuntimeError("the router is not at the centre of FastAPI's middleware stack")
            layer = inner
