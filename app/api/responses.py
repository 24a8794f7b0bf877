"""OpenAPI descriptions of the problem+json error responses the routes can return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.errors import PROBLEM_MEDIA_TYPE


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    errors: list[dict[str, Any]] | None = None


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Bad request"),
    401: _problem("Missing, invalid, expired or revoked token"),
    403: _problem("Not allowed"),
    404: _problem("Not found"),
    409: _problem("Conflict"),
    413: _problem("Body too large"),
    422: _problem("Validation failed; `errors` lists the fields"),
    429: _problem("Rate limited; see Retry-After"),
    503: _problem("A dependency is unavailable; see Retry-After"),
    504: _problem("A dependency timed out"),
}
