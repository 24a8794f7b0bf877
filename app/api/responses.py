"""What an operation can answer, for the OpenAPI document: its problems and the headers sent.

A route declares exactly the error responses it can give, by name from the catalogue below:

    @router.post("/things", operation_id="createThing", responses=problems(CONFLICT, *BODY))

`problems()` returns FastAPI's `responses` mapping: problem+json only, each with its
description, typed headers and one example per problem `type` (two problems with one status,
such as 400 invalid-cursor and invalid-host, become two named examples). `success()` does the
same for the 2xx answer's description and headers. Headers every response carries
(X-Request-ID, X-Trace-Id) are added to every operation by app.api.openapi.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from app.errors import PROBLEM_MEDIA_TYPE, problem_type


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Dotted location, e.g. `body.email` or `query.limit`.")
    message: str = Field(description="What is wrong with it, for people.")
    type: str = Field(description="Stable machine-readable error kind, e.g. `missing`.")


class Problem(BaseModel):
    """An RFC 9457 problem: every error this service answers has this shape."""

    model_config = ConfigDict(title="Problem")

    type: str = Field(description="URI naming the kind of problem; stable, compare on it.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(description="The request path.")
    request_id: str = Field(description="Same as the X-Request-ID response header.")
    errors: list[FieldError] | None = Field(
        default=None, description="Validation problems only: one entry per invalid field."
    )


def _header(description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


_SECONDS: Final = {"type": "integer", "minimum": 0}
HEADERS: Final[dict[str, dict[str, Any]]] = {
    "X-Request-ID": _header(
        "The request's id (the caller's own when it sent a valid one); also in the logs.",
        {"type": "string", "maxLength": 128},
        required=True,
    ),
    "X-Trace-Id": _header(
        "The W3C trace id of this request, when tracing is on.",
        {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    ),
    "Retry-After": _header("Seconds to wait before retrying.", _SECONDS, required=True),
    "RateLimit-Limit": _header("Requests allowed in the current window.", _SECONDS),
    "RateLimit-Remaining": _header("Requests left in the current window.", _SECONDS),
    "RateLimit-Reset": _header("Seconds until the window resets.", _SECONDS),
    "Location": _header(
        "Path of the created resource.", {"type": "string", "format": "uri-reference"}, True
    ),
    "Cache-Control": _header(
        "How long a client or proxy may reuse this answer.", {"type": "string"}, required=True
    ),
    "ETag": _header("Version of the answer, for If-None-Match.", {"type": "string"}, True),
    "WWW-Authenticate": _header(
        "The scheme to authenticate with: `Bearer`, or `Basic` for service clients.",
        {"type": "string"},
        required=True,
    ),
}
RATE_LIMIT_HEADERS: Final = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    """One problem an operation can answer, as the document shows it."""

    status: int
    slug: str
    title: str
    description: str
    detail: str
    headers: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def example(self, instance: str = "/api/v1/users") -> dict[str, Any]:
        return {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            "request_id": "0f5c2a4e9b7d4c1e8a3f6b2d9e4c7a10",
            **self.extra,
        }


MALFORMED_BODY: Final = ProblemSpec(
    400,
    "bad-request",
    "Bad request",
    "The body is not JSON (or not UTF-8)",
    "There was an error parsing the body",
)
BAD_CURSOR: Final = ProblemSpec(
    400,
    "invalid-cursor",
    "Invalid cursor",
    "The cursor was not issued by this service",
    "The cursor is not one this service issued.",
)
UNAUTHENTICATED: Final = ProblemSpec(
    401,
    "unauthenticated",
    "Authentication required",
    "Missing, invalid, expired or revoked token",
    "The token has expired.",
    headers=("WWW-Authenticate",),
)
BAD_CREDENTIALS: Final = ProblemSpec(
    401,
    "unauthenticated",
    "Authentication required",
    "Wrong email or password, or a disabled account",
    "Incorrect email or password.",
    headers=("WWW-Authenticate",),
)
BAD_REFRESH: Final = ProblemSpec(
    401,
    "unauthenticated",
    "Authentication required",
    "Invalid, expired, reused or revoked refresh token",
    "The refresh token has been revoked.",
    headers=("WWW-Authenticate",),
)
INVALID_CLIENT: Final = ProblemSpec(
    401,
    "invalid-client",
    "Client authentication failed",
    "No, malformed or wrong HTTP Basic client credentials",
    "Unknown client or wrong secret.",
    headers=("WWW-Authenticate",),
)
FORBIDDEN: Final = ProblemSpec(
    403,
    "forbidden",
    "Forbidden",
    "The caller may not do this (only self or an admin)",
    "You may change only your own account.",
)
ADMIN_ONLY: Final = ProblemSpec(
    403, "forbidden", "Forbidden", "Only an admin may do this", "Only an admin may list users."
)
NOT_FOUND: Final = ProblemSpec(
    404,
    "not-found",
    "Not found",
    "No user with this id",
    "User 3fa85f64-5717-4562-b3fc-2c963f66afa6 does not exist.",
)
SESSION_NOT_FOUND: Final = ProblemSpec(
    404,
    "not-found",
    "Not found",
    "No live session with this id belongs to the caller",
    "Session 3fa85f64-5717-4562-b3fc-2c963f66afa6 does not exist.",
)
LAST_ADMIN: Final = ProblemSpec(
    409,
    "conflict",
    "Conflict",
    "The last admin cannot be demoted, deactivated or deleted",
    "The last admin cannot be demoted, deactivated or deleted; make another user admin first.",
)
EMAIL_TAKEN: Final = ProblemSpec(
    409,
    "conflict",
    "Conflict",
    "The email is taken (compared case-insensitively)",
    "A user with this email already exists.",
)
TOO_LARGE: Final = ProblemSpec(
    413,
    "body-too-large",
    "Request body too large",
    "The body exceeds MAX_BODY_BYTES",
    "The request body exceeds 65536 bytes.",
)
INVALID: Final = ProblemSpec(
    422,
    "validation-error",
    "Validation failed",
    "The request is invalid; `errors` names each field",
    "Invalid fields: body.email",
    extra={
        "errors": [
            {
                "field": "body.email",
                "message": "value is not a valid email address",
                "type": "value_error",
            }
        ]
    },
)
RATE_LIMITED: Final = ProblemSpec(
    429,
    "rate-limited",
    "Too many requests",
    "Rate limited; retry after Retry-After seconds",
    "Rate limit of 10 per 60s exceeded; retry in 42s.",
    headers=("Retry-After", *RATE_LIMIT_HEADERS),
)
UNAVAILABLE: Final = ProblemSpec(
    503,
    "dependency-unavailable",
    "Service temporarily unavailable",
    "The database (or a fail-closed Redis) is unavailable; retry after Retry-After seconds",
    "The database is unreachable; retry shortly.",
    headers=("Retry-After",),
)
TIMED_OUT: Final = ProblemSpec(
    504,
    "dependency-timeout",
    "Dependency timed out",
    "The database did not answer within its timeout",
    "The database did not answer within the statement timeout.",
    headers=("Retry-After",),
)

# Groups that go together: a JSON body can be unparseable, too large or invalid (a form body
# only the last two); every database-backed operation can meet an unavailable or slow
# database; every authenticated call is admitted (token, revocation, per-user rate limit)
# before it runs.
BODY: Final = (MALFORMED_BODY, TOO_LARGE, INVALID)
FORM_BODY: Final = (TOO_LARGE, INVALID)
DEPENDENCIES: Final = (UNAVAILABLE, TIMED_OUT)
AUTHENTICATED: Final = (UNAUTHENTICATED, RATE_LIMITED)


def _headers(names: Iterable[str]) -> dict[str, Any]:
    return {name: HEADERS[name] for name in names}


def problems(*specs: ProblemSpec) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses` for these problems: problem+json only, with examples and headers."""
    by_status: dict[int, list[ProblemSpec]] = {}
    for spec in specs:
        by_status.setdefault(spec.status, []).append(spec)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        headers = _headers(dict.fromkeys(name for spec in group for name in spec.headers))
        examples: dict[str, Any] = {}
        for spec in group:
            name = spec.slug if spec.slug not in examples else f"{spec.slug}-{len(examples)}"
            examples[name] = {"summary": spec.description, "value": spec.example()}
        response: dict[str, Any] = {
            "description": "; or ".join(dict.fromkeys(spec.description for spec in group)),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "examples": examples,
                }
            },
        }
        if headers:
            response["headers"] = headers
        responses[status] = response
    return responses


def success(
    status: int, description: str, headers: Iterable[str] = ()
) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses` entry for the success answer: its description and headers."""
    response: dict[str, Any] = {"description": description}
    names = tuple(headers)
    if names:
        response["headers"] = _headers(names)
    return {status: response}


def responses(
    status: int,
    description: str,
    *specs: ProblemSpec,
    headers: Iterable[str] = (),
    rate_limited: bool = False,
) -> dict[int | str, dict[str, Any]]:
    """The whole `responses` of an operation: its success and every problem it can give.
    `rate_limited`: every answer (errors too) may carry the RateLimit-* headers."""
    declared = {**success(status, description, headers), **problems(*specs)}
    if rate_limited:
        for response in declared.values():
            response_headers = response.setdefault("headers", {})
            for name in RATE_LIMIT_HEADERS:
                response_headers.setdefault(name, HEADERS[name])
    return declared
