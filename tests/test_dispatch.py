"""The route table picks the route Starlette's router would, for every kind of path, and the
dispatcher sits where FastAPI puts the router. Fails when a FastAPI or Starlette upgrade changes
how a route matches or how the middleware stack is built."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Match, Mount

from app.api.dispatch import RouteDispatch, RouteTable, _slow_template
from app.main import create_app
from app.settings import Settings

USER = str(uuid.uuid4())
PATHS = (
    "/",
    "/livez",
    "/livez/",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/docs/",
    "/docs/assets/swagger-ui.css",
    "/docs/assets",
    "/api/v1/users",
    "/api/v1/users/",
    "/api/v1/users/me",
    "/api/v1/users/me/",
    "/api/v1/users/me/sessions",
    f"/api/v1/users/me/sessions/{USER}",
    f"/api/v1/users/{USER}",
    f"/api/v1/users/{USER}/",
    f"/api/v1/users/{USER.upper()}",
    "/api/v1/users/not-a-uuid",
    f"/api/v1/users/{USER}/sessions/revoke",
    "/api/v1/users/a/b/c",
    "/api/v1/users//",
    "/api/v1/users/%2F",
    "/api/v1/users/me\n",
    "/livez\n",
    "/api/v1/auth/token",
    "/api/v1/auth/introspect",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/.well-known/",
    "/metrics",
    "/nowhere",
)
METHODS = ("GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "TRACE", "FOO")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(Settings(APP_ENV="test", JWT_SECRET_KEY="x" * 40))


def _scope(method: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
        **extra,
    }


def _router_choice(routes: list[BaseRoute], scope: dict[str, Any]) -> BaseRoute | None:
    # Starlette's router: the first full match wins.
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def test_table_picks_the_route_the_router_picks(app: FastAPI) -> None:
    table = RouteTable(app.router)
    chosen = 0
    for method in METHODS:
        for path in PATHS:
            scope = _scope(method, path)
            found = table.find(scope)
            expected = _router_choice(app.router.routes, scope)
            assert (found[2] if found else None) is expected, (method, path)
            if found is not None:
                chosen += 1
                _, child = expected.matches(scope) if expected else (None, {})
                assert found[3] == child, (method, path)
            template_scope = _scope(method, path)
            assert table.template(template_scope) == _slow_template(
                app.router.routes, _scope(method, path)
            ), (method, path)
    assert chosen > 20


def test_table_covers_every_route_of_the_app(app: FastAPI) -> None:
    table = RouteTable(app.router)
    table.find(_scope("GET", "/livez"))
    assert table._indexed
    assert any(type(route) is Mount for route in app.router.routes)


def test_scopes_the_table_leaves_to_the_router(app: FastAPI) -> None:
    table = RouteTable(app.router)
    assert table.find(_scope("GET", "/livez", root_path="/prefix")) is None
    assert table.find({"type": "websocket", "path": "/livez", "headers": []}) is None
    assert table.find(_scope("GET", "/nowhere")) is None
    assert table.find(_scope("POST", "/livez")) is None  # a 405 is the router's


def test_a_route_the_table_cannot_read_turns_it_off() -> None:
    app = FastAPI()
    app.host("api.example.com", FastAPI())
    table = RouteTable(app.router)
    assert table.find(_scope("GET", "/anything")) is None
    assert not table._indexed


def test_dispatcher_takes_the_routers_place_in_fastapis_stack(app: FastAPI) -> None:
    stack = app.build_middleware_stack()
    layers: list[Any] = []
    layer: Any = stack
    while not isinstance(layer, RouteDispatch):
        layers.append(layer)
        layer = layer.app
    assert layer.router is app.router
    assert layer._direct
    # FastAPI's own layers around the user middleware, innermost last.
    assert isinstance(layers[0], ServerErrorMiddleware)
    assert isinstance(layers[-2], ExceptionMiddleware)
    assert isinstance(layers[-1], AsyncExitStackMiddleware)
    # FastAPI's stack for the same app ends in the router where ours has the dispatcher.
    plain = FastAPI.build_middleware_stack(app)
    plain_layers: list[Any] = []
    layer = plain
    while layer is not app.router:
        plain_layers.append(type(layer))
        layer = layer.app
    assert plain_layers == [type(layer) for layer in layers]


def test_a_route_added_later_is_found() -> None:
    app = FastAPI(openapi_url=None)

    @app.get("/items/{name}")
    async def item(name: str) -> str:
        return name

    table = RouteTable(app.router)
    scope = _scope("GET", "/items/first")
    found = table.find(scope)
    assert found is not None and found[2] is app.router.routes[0]

    async def first() -> str:
        return "first"

    # Inserted ahead of the old route: the router now picks it, and so must the table.
    app.router.add_api_route("/items/first", first)
    app.router.routes.insert(0, app.router.routes.pop())
    found = table.find(_scope("GET", "/items/first"))
    assert found is not None and found[2] is _router_choice(app.router.routes, scope)
    assert getattr(found[2], "endpoint", None) is first
