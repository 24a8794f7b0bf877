"""Every answer of the service is the same byte for byte whether the route dispatcher or
FastAPI's own router runs the request: same status, headers and body, errors included."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute, request_response

from app.api.read_route import UserReadRoute
from tests.support.app_harness import AppHarness

# Differ on every request, whoever routes it (each request also spends rate-limit budget).
_VOLATILE_HEADERS = {
    "x-request-id",
    "server-timing",
    "date",
    "ratelimit-remaining",
    "ratelimit-reset",
}
_REQUEST_ID = re.compile(rb'"request_id":"[^"]*"')


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name not in _VOLATILE_HEADERS
    ]
    return response.status_code, headers, _REQUEST_ID.sub(b"", response.content)


async def _both(
    app: FastAPI, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> tuple[Any, Any]:
    dispatched = app.build_middleware_stack()
    plain = FastAPI.build_middleware_stack(app)
    answers = []
    for stack in (dispatched, plain):
        app.middleware_stack = stack
        answers.append(
            _answer(await client.request(method, path, follow_redirects=False, **kwargs))
        )
    app.middleware_stack = dispatched
    return answers[0], answers[1]


async def test_answers_are_the_routers_own(harness: AppHarness) -> None:
    user, auth = await harness.user_with_token("dispatch@example.com")
    other = str(uuid.uuid4())
    gzip = {**auth, "Accept-Encoding": "gzip"}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/v1/users/{user['id']}", {"headers": auth}),
        ("GET", f"/api/v1/users/{user['id']}", {"headers": gzip}),
        ("HEAD", f"/api/v1/users/{user['id']}", {"headers": auth}),
        ("GET", f"/api/v1/users/{user['id']}", {}),
        ("GET", f"/api/v1/users/{other}", {"headers": auth}),
        ("GET", "/api/v1/users/not-a-uuid", {"headers": auth}),
        ("GET", f"/api/v1/users/{user['id']}/", {"headers": auth}),
        ("GET", "/api/v1/users/me", {"headers": auth}),
        ("PATCH", "/api/v1/users/me", {"headers": auth, "json": {"full_name": 5}}),
        ("PUT", f"/api/v1/users/{user['id']}", {"headers": auth}),
        ("POST", "/livez", {}),
        ("GET", "/livez", {}),
        ("GET", "/nowhere", {}),
        ("GET", "/api/v1/users/me/sessions", {"headers": gzip}),
        ("POST", "/api/v1/auth/token", {"data": {"username": "x@example.com"}}),
        ("GET", "/openapi.json", {"headers": {"Accept-Encoding": "gzip"}}),
        ("GET", "/docs", {}),
        ("GET", "/docs/assets/none.css", {}),
        ("GET", "/.well-known/jwks.json", {}),
        ("OPTIONS", "/api/v1/users", {}),
    ]
    for method, path, kwargs in requests:
        dispatched, plain = await _both(harness.app, harness.client, method, path, **kwargs)
        assert dispatched == plain, (method, path)
    statuses = {
        (await harness.client.request(m, p, follow_redirects=False, **k)).status_code
        for m, p, k in requests
    }
    # The list reaches the answers that matter: success, redirect and each error.
    assert {200, 307, 401, 404, 405, 422} <= statuses


async def test_the_hot_read_answers_as_fastapis_generic_handler(harness: AppHarness) -> None:
    user, auth = await harness.user_with_token("direct-read@example.com")
    route = next(route for route in harness.app.routes if isinstance(route, UserReadRoute))
    direct = route.app
    # FastAPI's own handler for this route: dependencies solved, inside its request wrapper.
    generic = request_response(APIRoute.get_route_handler(route))
    requests: list[tuple[str, dict[str, str]]] = [
        (f"/api/v1/users/{user['id']}", auth),
        (f"/api/v1/users/{user['id']}", auth),
        (f"/api/v1/users/{user['id']}", {**auth, "Accept-Encoding": "gzip"}),
        (f"/api/v1/users/{uuid.uuid4()}", auth),
        (f"/api/v1/users/{user['id']}", {}),
        (f"/api/v1/users/{user['id']}", {"Authorization": "Bearer not.a.token"}),
        (f"/api/v1/users/{user['id']}", {"Authorization": "Basic dXNlcjpwYXNz"}),
    ]
    try:
        for path, headers in requests:
            answers = []
            for app in (direct, generic):
                route.app = app
                answers.append(_answer(await harness.client.get(path, headers=headers)))
            assert answers[0] == answers[1], (path, headers)
    finally:
        route.app = direct
    statuses = {(await harness.client.get(p, headers=h)).status_code for p, h in requests}
    assert {200, 401, 404} <= statuses
