"""The OpenAPI document: explicit names, problem+json only, typed headers, and every declared
error status reachable on the real service (and each answered as declared)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import text

from app.errors import PROBLEM_MEDIA_TYPE
from tests.support.app_harness import AppHarness
from tests.support.rate_windows import room_wait

METHODS = {"get", "post", "put", "patch", "delete"}
CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z]+$")


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (method, path, operation)."""
    found = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                found[operation["operationId"]] = (method, path, operation)
    return found


@pytest.fixture
async def document(harness: AppHarness) -> dict[str, Any]:
    response = await harness.client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_operations_have_explicit_ids_summaries_and_descriptions(
    document: dict[str, Any],
) -> None:
    found = operations(document)
    assert len(found) >= 9
    for operation_id, (method, path, operation) in found.items():
        # FastAPI's generated ids look like read_user_api_v1_users__user_id__get.
        assert CAMEL_CASE.match(operation_id), (method, path, operation_id)
        assert operation["summary"] and not operation["summary"].startswith(operation_id), (
            operation_id
        )
        assert len(operation.get("description", "")) > 20, operation_id


async def test_schema_names_are_real_names(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])
    assert {"Problem", "FieldError", "UserRead", "TokenPair", "LoginForm"} <= names
    generated = [name for name in names if name.startswith("Body_") or "_api_v1_" in name]
    assert not generated
    # FastAPI's own validation-error shape is never sent: it must not be described.
    assert not names & {"HTTPValidationError", "ValidationError"}
    login = document["paths"]["/api/v1/auth/token"]["post"]["requestBody"]
    form = login["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form == {"$ref": "#/components/schemas/LoginForm"}


async def test_problem_errors_items_are_typed(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    errors = problem["properties"]["errors"]
    items = next(option for option in errors["anyOf"] if option.get("type") == "array")["items"]
    assert items == {"$ref": "#/components/schemas/FieldError"}
    field_error = document["components"]["schemas"]["FieldError"]
    assert set(field_error["required"]) == {"field", "message", "type"}


# An empty JWK Set with no-store, not a problem: JWKS consumers cache what they fetch.
NOT_PROBLEMS = {("getJwks", "503")}


async def test_errors_are_problem_json_only_with_examples_and_headers(
    document: dict[str, Any],
) -> None:
    for operation_id, (_, _, operation) in operations(document).items():
        for status, response in operation["responses"].items():
            where = (operation_id, status)
            assert response["description"], where
            assert response["headers"]["X-Request-ID"]["required"] is True, where
            assert response["headers"]["X-Request-ID"]["schema"]["type"] == "string", where
            if int(status) < 400 or where in NOT_PROBLEMS:
                continue
            assert set(response["content"]) == {PROBLEM_MEDIA_TYPE}, where
            media = response["content"][PROBLEM_MEDIA_TYPE]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, where
            assert media["examples"], where
            for example in media["examples"].values():
                assert example["value"]["status"] == int(status), where
            if status in {"429", "503", "504"}:
                assert response["headers"]["Retry-After"]["schema"]["type"] == "integer", where
            if status == "429":
                assert "RateLimit-Remaining" in response["headers"], where


async def test_success_headers_and_examples(document: dict[str, Any]) -> None:
    found = operations(document)
    created = found["signUp"][2]["responses"]["201"]
    assert created["headers"]["Location"]["required"] is True
    assert "RateLimit-Limit" in found["login"][2]["responses"]["200"]["headers"]
    assert "RateLimit-Remaining" in found["readMe"][2]["responses"]["200"]["headers"]
    schemas = document["components"]["schemas"]
    for name in ("UserCreate", "UserRead", "TokenPair"):
        assert schemas[name]["examples"], name


async def test_authorize_form_says_the_username_is_the_email(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    (scheme,) = schemes.values()
    assert scheme["type"] == "oauth2" and "password" in scheme["flows"]
    assert "email" in scheme["description"].lower()


# Each declared (operation, error status) and how a client meets it on the real service.
Scenario = Callable[["Calls"], Awaitable[httpx.Response]]


@dataclass
class Calls:
    harness: AppHarness
    limited: AppHarness
    login_limited: AppHarness

    async def user(self, harness: AppHarness | None = None) -> tuple[str, dict[str, str]]:
        harness = harness or self.harness
        email = f"u{uuid.uuid4().hex[:10]}@example.com"
        user, headers = await harness.user_with_token(email)
        return str(user["id"]), headers

    async def admin(self) -> dict[str, str]:
        email = f"a{uuid.uuid4().hex[:10]}@example.com"
        await self.harness.sign_up(email)
        await self.harness.make_admin(email)
        tokens = await self.harness.login(email)
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    async def rate_limited(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The limited app allows one authenticated call a minute per user: spend it first."""
        user_id, headers = await self.user(self.limited)
        await asyncio.sleep(room_wait(60, 2))  # spent and refused in one window
        spent = await self.limited.client.get("/api/v1/users/me", headers=headers)
        assert spent.status_code == 200, spent.text
        return await self.limited.client.request(
            method, path.replace("{id}", user_id), headers=headers, **kwargs
        )


BIG = b"x" * 70_000
# Not UTF-8, so not JSON: FastAPI cannot even parse it (400, not 422).
GARBAGE = {"content": b"\xff\xfe{", "headers": {"content-type": "application/json"}}
NOBODY = "/api/v1/users/00000000-0000-4000-8000-000000000000"


async def _sign_up_taken(c: Calls) -> httpx.Response:
    email = f"t{uuid.uuid4().hex[:10]}@example.com"
    await c.harness.sign_up(email)
    return await c.harness.client.post(
        "/api/v1/users", json={"email": email.upper(), "password": "long enough pw"}
    )


async def _login_limited(c: Calls) -> httpx.Response:
    form = {"username": "nobody@example.com", "password": "x"}
    for _ in range(3):
        response = await c.login_limited.client.post("/api/v1/auth/token", data=form)
        if response.status_code == 429:
            return response
    return response


async def _me_of_deleted(c: Calls) -> httpx.Response:
    user_id, headers = await c.user()
    async with c.harness.app.state.resources.engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
    return await c.harness.client.get("/api/v1/users/me", headers=headers)


async def _update_taken(c: Calls) -> httpx.Response:
    other = f"o{uuid.uuid4().hex[:10]}@example.com"
    await c.harness.sign_up(other)
    user_id, headers = await c.user()
    return await c.harness.client.patch(
        f"/api/v1/users/{user_id}", json={"email": other}, headers=headers
    )


async def _last_admin_deletes_itself(c: Calls) -> httpx.Response:
    email = f"last{uuid.uuid4().hex[:10]}@example.com"
    user = await c.harness.sign_up(email)
    async with c.harness.app.state.resources.engine.begin() as connection:
        await connection.execute(text("UPDATE users SET is_admin = (email = :e)"), {"e": email})
    tokens = await c.harness.login(email)
    return await c.harness.client.delete(
        f"/api/v1/users/{user['id']}",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )


async def _as_other(c: Calls, method: str, **kwargs: Any) -> httpx.Response:
    victim, _ = await c.user()
    _, headers = await c.user()
    return await c.harness.client.request(
        method, f"/api/v1/users/{victim}", headers=headers, **kwargs
    )


async def _as_user(c: Calls, method: str, path: str, **kwargs: Any) -> httpx.Response:
    user_id, headers = await c.user()
    return await c.harness.client.request(
        method, path.replace("{id}", user_id), headers=headers, **kwargs
    )


async def _garbage_as_user(c: Calls, method: str, path: str) -> httpx.Response:
    user_id, headers = await c.user()
    return await c.harness.client.request(
        method,
        path.replace("{id}", user_id),
        content=GARBAGE["content"],
        headers={**headers, **GARBAGE["headers"]},
    )


async def _introspection_limited(c: Calls) -> httpx.Response:
    basic = {"Authorization": "Basic " + base64.b64encode(b"gateway:gateway-secret").decode()}
    for _ in range(3):
        response = await c.limited.client.post(
            "/api/v1/auth/introspect", data={"token": "x"}, headers=basic
        )
        if response.status_code == 429:
            return response
    return response


async def _as_admin(c: Calls, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await c.harness.client.request(method, path, headers=await c.admin(), **kwargs)


def _anonymous(method: str, path: str, **kwargs: Any) -> Scenario:
    async def call(c: Calls) -> httpx.Response:
        return await c.harness.client.request(method, path, **kwargs)

    return call


SCENARIOS: dict[tuple[str, int], Scenario] = {
    ("signUp", 400): _anonymous("POST", "/api/v1/users", **GARBAGE),
    ("signUp", 409): _sign_up_taken,
    ("signUp", 413): _anonymous("POST", "/api/v1/users", content=BIG),
    ("signUp", 422): _anonymous("POST", "/api/v1/users", json={"email": "no", "password": "x"}),
    ("login", 401): _anonymous(
        "POST", "/api/v1/auth/token", data={"username": "no@example.com", "password": "wrong"}
    ),
    ("login", 413): _anonymous("POST", "/api/v1/auth/token", content=BIG),
    ("login", 422): _anonymous("POST", "/api/v1/auth/token", data={"username": "a@example.com"}),
    ("login", 429): _login_limited,
    ("refreshTokens", 400): _anonymous("POST", "/api/v1/auth/refresh", **GARBAGE),
    ("refreshTokens", 401): _anonymous(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": "not-a-token"}
    ),
    ("refreshTokens", 413): _anonymous("POST", "/api/v1/auth/refresh", content=BIG),
    ("refreshTokens", 422): _anonymous("POST", "/api/v1/auth/refresh", json={}),
    ("logout", 400): lambda c: _garbage_as_user(c, "POST", "/api/v1/auth/logout"),
    ("logout", 401): _anonymous("POST", "/api/v1/auth/logout"),
    ("logout", 413): lambda c: _as_user(c, "POST", "/api/v1/auth/logout", content=BIG),
    ("logout", 422): lambda c: _as_user(c, "POST", "/api/v1/auth/logout", json={"x": 1}),
    ("logout", 429): lambda c: c.rate_limited("POST", "/api/v1/auth/logout"),
    ("readMe", 401): _anonymous("GET", "/api/v1/users/me"),
    ("readMe", 404): _me_of_deleted,
    ("readMe", 429): lambda c: c.rate_limited("GET", "/api/v1/users/me"),
    ("readUser", 401): _anonymous("GET", NOBODY),
    ("readUser", 404): lambda c: _as_user(c, "GET", NOBODY),
    ("readUser", 422): lambda c: _as_user(c, "GET", "/api/v1/users/not-a-uuid"),
    ("readUser", 429): lambda c: c.rate_limited("GET", "/api/v1/users/{id}"),
    ("updateUser", 400): lambda c: _garbage_as_user(c, "PATCH", "/api/v1/users/{id}"),
    ("updateUser", 401): _anonymous("PATCH", NOBODY, json={}),
    ("updateUser", 403): lambda c: _as_other(c, "PATCH", json={"full_name": "x"}),
    ("updateUser", 404): lambda c: _as_admin(c, "PATCH", NOBODY, json={"full_name": "x"}),
    ("updateUser", 409): _update_taken,
    ("updateUser", 413): lambda c: _as_user(c, "PATCH", "/api/v1/users/{id}", content=BIG),
    ("updateUser", 422): lambda c: _as_user(c, "PATCH", "/api/v1/users/{id}", json={"x": 1}),
    ("updateUser", 429): lambda c: c.rate_limited("PATCH", "/api/v1/users/{id}", json={}),
    ("deleteUser", 401): _anonymous("DELETE", NOBODY),
    ("deleteUser", 403): lambda c: _as_other(c, "DELETE"),
    ("deleteUser", 404): lambda c: _as_admin(c, "DELETE", NOBODY),
    ("deleteUser", 409): _last_admin_deletes_itself,
    ("deleteUser", 422): lambda c: _as_user(c, "DELETE", "/api/v1/users/not-a-uuid"),
    ("deleteUser", 429): lambda c: c.rate_limited("DELETE", "/api/v1/users/{id}"),
    ("introspectToken", 401): _anonymous("POST", "/api/v1/auth/introspect", data={"token": "x"}),
    ("introspectToken", 413): _anonymous("POST", "/api/v1/auth/introspect", content=BIG),
    ("introspectToken", 422): _anonymous("POST", "/api/v1/auth/introspect", data={}),
    ("introspectToken", 429): _introspection_limited,
    ("revokeToken", 413): _anonymous("POST", "/api/v1/auth/revoke", content=BIG),
    ("revokeToken", 422): _anonymous("POST", "/api/v1/auth/revoke", data={}),
    ("listMySessions", 401): _anonymous("GET", "/api/v1/users/me/sessions"),
    ("listMySessions", 429): lambda c: c.rate_limited("GET", "/api/v1/users/me/sessions"),
    ("revokeMySession", 401): _anonymous("DELETE", f"/api/v1/users/me/sessions/{uuid.uuid4()}"),
    ("revokeMySession", 404): lambda c: _as_user(
        c, "DELETE", f"/api/v1/users/me/sessions/{uuid.uuid4()}"
    ),
    ("revokeMySession", 422): lambda c: _as_user(c, "DELETE", "/api/v1/users/me/sessions/x"),
    ("revokeMySession", 429): lambda c: c.rate_limited(
        "DELETE", f"/api/v1/users/me/sessions/{uuid.uuid4()}"
    ),
    ("revokeAllSessions", 401): _anonymous("POST", f"{NOBODY}/sessions/revoke"),
    ("revokeAllSessions", 403): lambda c: _as_user(c, "POST", f"{NOBODY}/sessions/revoke"),
    ("revokeAllSessions", 422): lambda c: _as_admin(c, "POST", "/api/v1/users/x/sessions/revoke"),
    ("revokeAllSessions", 429): lambda c: c.rate_limited(
        "POST", "/api/v1/users/{id}/sessions/revoke"
    ),
    ("listUsers", 400): lambda c: _as_admin(c, "GET", "/api/v1/users?cursor=bm9wZQ"),
    ("listUsers", 401): _anonymous("GET", "/api/v1/users"),
    ("listUsers", 403): lambda c: _as_user(c, "GET", "/api/v1/users"),
    ("listUsers", 422): lambda c: _as_admin(c, "GET", "/api/v1/users?limit=0"),
    ("listUsers", 429): lambda c: c.rate_limited("GET", "/api/v1/users"),
}


async def test_every_declared_client_error_has_a_scenario(document: dict[str, Any]) -> None:
    """503/504 come from a failing database or Redis (tests/faults, test_resilience); every
    other declared error status must be one a client can meet, and none may be missing."""
    declared = {
        (operation_id, int(status))
        for operation_id, (_, _, operation) in operations(document).items()
        for status in operation["responses"]
        if 400 <= int(status) < 500
    }
    assert declared == set(SCENARIOS)


@pytest.fixture
async def calls(harness: AppHarness, make_harness: Callable[..., Any]) -> Calls:
    limited = await make_harness(
        clean=False,
        RATE_LIMIT_API="1/minute",
        RATE_LIMIT_INTROSPECTION="1/minute",
        INTROSPECTION_CLIENTS="gateway:gateway-secret",
    )
    login_limited = await make_harness(clean=False, RATE_LIMIT_LOGIN="1/minute")
    return Calls(harness, limited, login_limited)


async def test_each_declared_error_is_answered_as_declared(
    calls: Calls, document: dict[str, Any]
) -> None:
    found = operations(document)
    problem_schema = _resolved(
        {
            **document["components"]["schemas"]["Problem"],
            "$defs": document["components"]["schemas"],
        }
    )
    for (operation_id, status), scenario in SCENARIOS.items():
        response = await scenario(calls)
        where = (operation_id, status, response.text[:200])
        assert response.status_code == status, where
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, where
        body = response.json()
        jsonschema.validate(body, problem_schema)
        declared = found[operation_id][2]["responses"][str(status)]["headers"]
        for name, header in declared.items():
            if header["required"]:
                assert response.headers.get(name), (*where, name)
            if header["schema"].get("type") == "integer" and name in response.headers:
                assert response.headers[name].isdigit(), (*where, name)


def _resolved(schema: dict[str, Any]) -> dict[str, Any]:
    """The Problem schema with its component references pointing at local $defs."""
    raw = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    resolved: dict[str, Any] = json.loads(raw)
    return resolved
