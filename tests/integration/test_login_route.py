"""POST /auth/token reads an ordinary login form itself and runs its dependencies by hand:
every answer must be the one FastAPI's generic handler gives, ordinary form or not."""

from __future__ import annotations

from typing import Any

import fastapi.routing
import jwt
import pytest
from starlette.datastructures import Headers
from starlette.formparsers import FormParser

from app.api.login_route import parse_ordinary_form
from tests.support.app_harness import PASSWORD, AppHarness

LOGIN = "/api/v1/auth/token"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def generic_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The logins FastAPI's generic handler solved dependencies for."""
    calls: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        if kwargs["request"].url.path == LOGIN:
            calls.append(LOGIN)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def _unused() -> None:
    """A dependency no route has."""


def _names(response: Any) -> list[str]:
    return sorted(name.lower() for name, _ in response.headers.multi_items())


async def test_an_ordinary_login_answers_as_the_generic_handler_would(
    harness: AppHarness, generic_calls: list[str]
) -> None:
    user = await harness.sign_up("ordinary-login@example.com")
    # As generic OAuth2 clients send it: empty fields are left out, as FastAPI leaves them.
    form = {
        "grant_type": "password",
        "username": "ordinary-login@example.com",
        "password": PASSWORD,
        "scope": "",
        "client_id": "",
    }
    direct = await harness.client.post(LOGIN, data=form)
    assert generic_calls == []
    # Any dependency override sends every request to the generic handler.
    harness.app.dependency_overrides[_unused] = _unused
    try:
        generic = await harness.client.post(LOGIN, data=form)
    finally:
        harness.app.dependency_overrides.clear()
    assert generic_calls == [LOGIN]
    for response in (direct, generic):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.headers["ratelimit-limit"]
        claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
        assert claims["sub"] == user["id"]
    # The same headers, each once; the same fields in the same order.
    assert _names(direct) == _names(generic)
    assert sorted(set(_names(direct))) == _names(direct)
    assert list(direct.json()) == list(generic.json())
    assert direct.json()["token_type"] == generic.json()["token_type"] == "bearer"


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        (b"username=unusual-login%40example.com", 422, ["body.password"]),
        (b"username=&password=whatever-it-is", 422, ["body.username"]),
        (
            b"username=unusual-login%40example.com&password=x&grant_type=code",
            422,
            ["body.grant_type"],
        ),
        # Each field twice: FastAPI's form reading decides which counts.
        (b"username=x&username=unusual-login%40example.com&password=" + PASSWORD.encode(), 200, []),
        # Not a separator: the username runs on, and the password is missing.
        (
            b"username=unusual-login%40example.com;password=" + PASSWORD.encode(),
            422,
            ["body.password"],
        ),
    ],
)
async def test_unusual_forms_get_fastapi_s_own_answers(
    harness: AppHarness,
    generic_calls: list[str],
    body: bytes,
    status: int,
    fields: list[str],
) -> None:
    await harness.sign_up("unusual-login@example.com")
    response = await harness.client.post(LOGIN, content=body, headers=FORM)
    assert generic_calls == [LOGIN]
    assert response.status_code == status, response.text
    if fields:
        assert response.headers["content-type"] == "application/problem+json"
        assert [error["field"] for error in response.json()["errors"]] == fields
    # The rate limit counted it, on either path.
    assert int(response.headers["ratelimit-remaining"]) >= 0


async def test_a_json_login_gets_fastapi_s_answer(
    harness: AppHarness, generic_calls: list[str]
) -> None:
    response = await harness.client.post(
        LOGIN, json={"username": "json-login@example.com", "password": PASSWORD}
    )
    assert generic_calls == [LOGIN]
    assert response.status_code == 422
    assert {error["field"] for error in response.json()["errors"]} == {
        "body.username",
        "body.password",
    }


@pytest.mark.parametrize(
    ("body", "ordinary"),
    [
        (b"", True),
        (b"username=a%40b.c&password=p", True),
        (b"username=a+b%40c.d&password=%E2%82%AC+%2B%26%3D", True),
        (b"username=caf\xc3\xa9%40example.com&password=p", True),
        (b"username=a%40b.c&password=p&client_id=web&scope=", True),
        (b"username=a%ZZ&password=%", True),
        (b"a=1&&b=2", False),
        (b"novalue&password=p", False),
        (b"username=a&username=b", False),
        (b"username=a;password=b", True),
    ],
)
async def test_an_ordinary_form_reads_as_starlette_reads_it(body: bytes, ordinary: bool) -> None:
    """Whatever this parser accepts, Starlette's form parser reads the same way."""
    fields = parse_ordinary_form(body)
    assert (fields is not None) == ordinary

    async def stream() -> Any:
        yield body
        yield b""

    parsed = await FormParser(Headers({"content-type": FORM["content-type"]}), stream()).parse()
    if fields is not None:
        assert list(parsed.multi_items()) == list(fields.items())
