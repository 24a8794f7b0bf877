"""HTTP routes of RFC 7662 and RFC 7009: token introspection (service clients only) and token
revocation (any holder of the token)."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import orjson
from fastapi import APIRouter, Form, Request, Response

from app.api.deps import ResourcesDep
from app.api.responses import (
    DEPENDENCIES,
    FORM_BODY,
    HEADERS,
    INVALID_CLIENT,
    RATE_LIMITED,
    problems,
)
from app.errors import AuthenticationError, ClientAuthenticationError, RateLimitedError
from app.observability.metrics import (
    INTROSPECTION_DURATION,
    record_introspection,
    record_rate_limited,
)
from app.schemas.auth import IntrospectionRequest, RevocationRequest
from app.wiring import Resources

router = APIRouter(prefix="/auth", tags=["auth"])


def _client_id(request: Request, resources: Resources) -> str:
    """The authenticated client's id (RFC 6749 2.3.1: form-encoded id and secret in Basic)."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise ClientAuthenticationError("Introspection requires HTTP Basic client credentials.")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ClientAuthenticationError("Malformed Basic credentials.") from error
    client_id, _, secret = decoded.partition(":")
    client_id, secret = unquote(client_id), unquote(secret)
    if not resources.introspection.clients.authenticate(client_id, secret):
        raise ClientAuthenticationError("Unknown client or wrong secret.")
    return client_id


_INTROSPECTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "RFC 7662 answer: `active`, and the token's claims when it is active.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["active"],
                    "properties": {"active": {"type": "boolean"}},
                }
            }
        },
        "headers": {"Cache-Control": HEADERS["Cache-Control"]},
    },
    **problems(INVALID_CLIENT, RATE_LIMITED, *FORM_BODY, *DEPENDENCIES),
}


@router.post(
    "/introspect",
    summary="Token introspection (RFC 7662)",
    operation_id="introspectToken",
    response_class=Response,
    responses=_INTROSPECTION_RESPONSES,
)
async def introspect(
    request: Request,
    resources: ResourcesDep,
    form: Annotated[IntrospectionRequest, Form()],
) -> Response:
    """For services that need instant revocation: `active` is false the moment the session
    ends (logout, password change, revocation). HTTP Basic with a listed client id."""
    started = time.perf_counter()
    try:
        client_id = _client_id(request, resources)
    except ClientAuthenticationError:
        record_introspection("unauthorized")
        raise
    settings = resources.settings
    rate = settings.rate_limit_introspection
    if settings.rate_limit_enabled:
        decision = await resources.rate_limiter.hit("introspection", client_id, rate)
        if decision is not None and not decision.allowed:
            record_rate_limited("introspection")
            record_introspection("rate_limited")
            raise RateLimitedError(
                f"Introspection limit of {rate.limit} per {rate.period_seconds}s exceeded.",
                headers=decision.headers(),
            )
    answer = await resources.introspection.introspect(form.token)
    record_introspection("active" if answer["active"] else "inactive")
    INTROSPECTION_DURATION.observe(time.perf_counter() - started)
    # Never cached: the answer is only true at this moment.
    return Response(
        orjson.dumps(answer),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@router.post(
    "/revoke",
    summary="Token revocation (RFC 7009)",
    operation_id="revokeToken",
    response_class=Response,
    responses={
        200: {
            "description": "Revoked, or nothing to revoke (always 200).",
            "headers": {"Cache-Control": HEADERS["Cache-Control"]},
        },
        **problems(*FORM_BODY, *DEPENDENCIES),
    },
)
async def revoke(resources: ResourcesDep, form: Annotated[RevocationRequest, Form()]) -> Response:
    """Ends the session of a refresh (or access) token, as logout does, for clients that hold
    only the token. An invalid or already revoked token is not an error (RFC 7009 2.2)."""
    token = form.token
    hinted_access = form.token_type_hint == "access_token"  # noqa: S105 - a type name, not a secret
    kinds: tuple[Literal["access", "refresh"], ...] = (
        ("access", "refresh") if hinted_access else ("refresh", "access")
    )
    for kind in kinds:
        try:
            claims = resources.tokens.decode(token, kind)
        except AuthenticationError:
            continue
        await resources.auth.logout(claims, None)
        break
    return Response(status_code=200, headers={"Cache-Control": "no-store"})
