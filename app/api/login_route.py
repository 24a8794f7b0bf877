"""The route class of `POST /auth/token`: an ordinary login form runs its dependencies by hand.

A login storm's cost to other requests is each login's own work on the event loop: cached
reads wait behind every step of it. FastAPI's generic handler solves the route's dependency
tree and parses the form through a multipart parser on every login, which is a large share of
the steps before the password check. This route reads an ordinary form (URL-encoded, each
field once) itself, validates it with the same model, and calls the same dependency functions
in FastAPI's order. Any other request, and any form the model refuses, goes to FastAPI's
generic handler with the body replayed, so every error answer (the 422 field errors) stays
FastAPI's own. The route's signature is unchanged, and so is the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote_plus

from fastapi import Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.body_limit import replaying
from app.api.deps import client_info, get_auth_service, get_resources, login_rate_limit
from app.api.read_route import sub_response
from app.schemas.auth import LoginForm

_FORM: Final = b"application/x-www-form-urlencoded"


def _is_form(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == _FORM
    return False


def parse_ordinary_form(body: bytes) -> dict[str, str] | None:
    """The fields of a URL-encoded body, decoded as Starlette's form parser decodes them, or
    None unless every field is `name=value` and appears once (FastAPI then decides)."""
    fields: dict[str, str] = {}
    for field in body.decode("latin-1").split("&") if body else ():
        name, equals, value = field.partition("=")
        if not equals:
            return None
        name = unquote_plus(name)
        if name in fields:
            return None
        fields[name] = unquote_plus(value)
    return fields


async def _read_body(receive: Receive) -> tuple[bytes | None, list[Message]]:
    """The whole body (None if the client left before sending it all), and the messages it
    came in, to replay them."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


class LoginRoute(APIRoute):
    """For an endpoint `login(form, auth, client)` with the `login_rate_limit` dependency."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        response_class = self.response_class
        if isinstance(response_class, DefaultPlaceholder):
            response_class = response_class.value
        self._response_class: type[Response] = response_class
        self.app = self._direct_app(self.app)

    def _form(self, scope: Scope, body: bytes) -> LoginForm | None:
        """The form of an ordinary login, or None to leave the request to FastAPI."""
        if getattr(scope.get("app"), "dependency_overrides", None):
            return None
        fields = parse_ordinary_form(body)
        if fields is None:
            return None
        # FastAPI reads an empty field as a missing one (OAuth2 clients send `scope=` empty).
        present = {name: value for name, value in fields.items() if value}
        try:
            return LoginForm.model_validate(present)
        except ValidationError:
            return None

    async def _login(self, request: Request, form: LoginForm) -> Response:
        resources = await get_resources(request)
        response = sub_response()
        await login_rate_limit(request, resources, response)
        auth = await get_auth_service(resources)
        client = await client_info(request)
        pair = await self.endpoint(form=form, auth=auth, client=client)
        answer = self._response_class(pair.model_dump(mode="json"))
        answer.raw_headers.extend(response.raw_headers)
        return answer

    def _direct_app(self, wrapped: ASGIApp) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if not _is_form(scope):
                await wrapped(scope, receive, send)
                return
            body, messages = await _read_body(receive)
            form = None if body is None else self._form(scope, body)
            if form is None:
                await wrapped(scope, replaying(messages, receive), send)
                return
            response = await self._login(Request(scope, receive, send), form)
            await response(scope, receive, send)

        return app
