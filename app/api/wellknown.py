"""Discovery: the JWK Set (RFC 7517) and the authorization server metadata (RFC 8414)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from app.api.deps import ResourcesDep
from app.api.responses import HEADERS
from app.observability.metrics import JWKS_REQUESTS

router = APIRouter(prefix="/.well-known", tags=["discovery"])

_JWK_SET = {
    "type": "object",
    "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
}
_CACHED = {name: HEADERS[name] for name in ("Cache-Control", "ETag")}
_JWKS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The JWK Set.",
        "content": {"application/jwk-set+json": {"schema": _JWK_SET}},
        "headers": _CACHED,
    },
    304: {"description": "The set matches If-None-Match.", "headers": _CACHED},
    # Not a problem document on purpose: a consumer that caches whatever it gets must get
    # an empty key set it is told not to store (no-store), never an error body.
    503: {
        "description": "No key loaded yet; never cached.",
        "content": {"application/jwk-set+json": {"schema": _JWK_SET}},
        "headers": {name: HEADERS[name] for name in ("Cache-Control", "Retry-After")},
    },
}
_METADATA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "RFC 8414 metadata.",
        "content": {"application/json": {"schema": {"type": "object", "required": ["issuer"]}}},
        "headers": {"Cache-Control": HEADERS["Cache-Control"]},
    }
}

JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"
INTROSPECTION_PATH = "/api/v1/auth/introspect"
REVOCATION_PATH = "/api/v1/auth/revoke"
LOGIN_PATH = "/api/v1/auth/token"


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


@router.get(
    "/jwks.json",
    summary="Public signing keys (JWK Set)",
    operation_id="getJwks",
    response_class=Response,
    responses=_JWKS_RESPONSES,
)
async def jwks(request: Request, resources: ResourcesDep) -> Response:
    """Every published key: next, active and retired. Cache it for the `max-age` given; a
    key signs only after it has been published longer than that."""
    published = resources.keys.jwks()
    if published is None:
        JWKS_REQUESTS.labels(result="unavailable").inc()
        # No key loaded yet: an empty set must never land in a consumer's cache.
        return Response(
            orjson.dumps({"keys": []}),
            503,
            headers={"Cache-Control": "no-store", "Retry-After": "2"},
            media_type="application/jwk-set+json",
        )
    body, etag = published
    headers = {
        "Cache-Control": f"public, max-age={resources.settings.jwks_max_age_seconds}",
        "ETag": etag,
    }
    if _etag_matches(request.headers.get("if-none-match"), etag):
        JWKS_REQUESTS.labels(result="not_modified").inc()
        return Response(status_code=304, headers=headers)
    JWKS_REQUESTS.labels(result="ok").inc()
    return Response(body, headers=headers, media_type="application/jwk-set+json")


@router.get(
    "/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
    operation_id="getAuthorizationServerMetadata",
    response_class=Response,
    responses=_METADATA_RESPONSES,
)
async def metadata(request: Request, resources: ResourcesDep) -> Response:
    """What a standard client needs to configure itself. Not an OpenID provider: no ID
    tokens, no userinfo, so no OpenID configuration is published."""
    settings = resources.settings
    base = (settings.public_base_url or str(request.base_url)).rstrip("/")
    document = {
        "issuer": settings.jwt_issuer,
        "jwks_uri": base + JWKS_PATH,
        "token_endpoint": base + LOGIN_PATH,
        "introspection_endpoint": base + INTROSPECTION_PATH,
        "revocation_endpoint": base + REVOCATION_PATH,
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        # Algorithms of the access tokens' JWS signatures (RFC 9068 tokens, verified with
        # the keys at jwks_uri).
        "access_token_signing_alg_values_supported": resources.keys.algorithms,
    }
    return Response(
        orjson.dumps(document),
        headers={"Cache-Control": f"public, max-age={settings.jwks_max_age_seconds}"},
        media_type="application/json",
    )
