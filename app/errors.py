"""Domain errors raised by services and infra, and the one RFC 9457 problem+json shape."""

from __future__ import annotations

from typing import Any, ClassVar, TypedDict, Unpack

import orjson
from starlette.types import Send

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://user-service.dev/problems/"


class DomainError(Exception):
    """Base of every error the API turns into a problem response.

    Subclasses fix the HTTP status, a stable `type` slug and a title; the instance
    carries the human detail. Services raise these, never HTTPException.
    """

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


class InvalidInputError(DomainError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class NotFoundError(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class ConflictError(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class AuthenticationError(DomainError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class ClientAuthenticationError(DomainError):
    """A service client (introspection) failed HTTP Basic authentication."""

    status = 401
    slug = "invalid-client"
    title = "Client authentication failed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="introspection"'})


class PermissionDeniedError(DomainError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class RateLimitedError(DomainError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"


class DependencyUnavailableError(DomainError):
    """A dependency (database, Redis) failed; the client may retry after a short wait."""

    status = 503
    slug = "dependency-unavailable"
    title = "Service temporarily unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class DependencyTimeoutError(DependencyUnavailableError):
    status = 504
    slug = "dependency-timeout"
    title = "Dependency timed out"


def problem_type(slug: str) -> str:
    return f"{PROBLEM_TYPE_BASE}{slug}"


class Problem(TypedDict):
    """The members every problem has (RFC 9457 plus our request id)."""

    status: int
    slug: str
    title: str
    detail: str
    instance: str
    request_id: str


def problem_body(
    *, extra: dict[str, Any] | None = None, **problem: Unpack[Problem]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(problem["slug"]),
        "title": problem["title"],
        "status": problem["status"],
        "detail": problem["detail"],
        "instance": problem["instance"],
        "request_id": problem["request_id"],
    }
    if extra:
        body.update(extra)
    return body


async def send_problem(
    send: Send, *, headers: tuple[tuple[bytes, bytes], ...] = (), **problem: Unpack[Problem]
) -> None:
    """Answer with a problem straight from ASGI middleware, where no handler runs."""
    body = orjson.dumps(problem_body(**problem))
    await send(
        {
            "type": "http.response.start",
            "status": problem["status"],
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
