"""The route class of the hottest read, `GET /users/{user_id}`: its dependencies run by hand.

FastAPI's generic handler solves a route's dependency tree for every request: it inspects
each dependency's parameters, validates them into dicts and caches their results, which on
a cached read costs more than the read itself. This route calls the same dependency
functions, in the order FastAPI would, when the request is an ordinary one (a canonical
UUID, no dependency overrides) and hands every other request to FastAPI's generic handler,
so each error answer (the 422 field errors, the 401 of a missing token) stays FastAPI's own.
The route's signature is unchanged, and so is the OpenAPI document built from it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import get_resources, get_user_service, oauth2_scheme, read_of_user

# The one spelling both paths read the same way; any other goes to FastAPI's validation.
_CANONICAL_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def sub_response() -> Response:
    # What FastAPI hands a dependency as `response`: headers only, no status, no length.
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    return response


class UserReadRoute(APIRoute):
    """For an endpoint `(read, users, response)`, as `read_user` is."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # An ordinary request skips FastAPI's request wrapper as well (its exit stacks, its
        # exception wrapper): none of these dependencies needs a stack, and an exception
        # they raise reaches the same handlers in the app's exception middleware, which
        # answers it as the wrapper would. Every other request gets the wrapper.
        self.app = self._direct_app(self.app)

    def _ordinary(self, scope: Scope) -> str | None:
        """The user id of an ordinary request, or None to leave it to FastAPI."""
        raw_id = scope.get("path_params", {}).get("user_id", "")
        app = scope.get("app")
        if getattr(app, "dependency_overrides", None) or not (
            isinstance(raw_id, str) and _CANONICAL_UUID.fullmatch(raw_id)
        ):
            return None
        return raw_id

    async def _read(self, request: Request, raw_id: str) -> Response:
        token = await oauth2_scheme(request)
        assert token is not None  # auto_error: a missing token raised the 401
        resources = await get_resources(request)
        response = sub_response()
        read = await read_of_user(uuid.UUID(raw_id), token, resources, request, response)
        users = await get_user_service(resources)
        result: Response = await self.endpoint(read=read, users=users, response=response)
        return result

    def _direct_app(self, wrapped: ASGIApp) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            raw_id = self._ordinary(scope)
            if raw_id is None:
                await wrapped(scope, receive, send)
                return
            response = await self._read(Request(scope, receive, send), raw_id)
            await response(scope, receive, send)

        return app

    def get_route_handler(self) -> Handler:
        generic = super().get_route_handler()

        async def handle(request: Request) -> Response:
            raw_id = self._ordinary(request.scope)
            if raw_id is None:
                return await generic(request)
            return await self._read(request, raw_id)

        return handle
