"""Hostile field values and mass assignment against the real service and database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from tests.security.conftest import PASSWORD, Api
from tests.support.database import ADMIN_DSN
from tests.support.isolation import database_name

# Confusable and unusual characters are the point of this list.
EDGE_CASE_NAMES = [
    "Robert'); DROP TABLE users;--",
    "' OR '1'='1' --",
    '" OR ""="',
    "1; SELECT pg_sleep(10)",
    "admin'/*",
    "%_\\%\\_ LIKE wildcards",
    "$1 $$dollar$$ quoting",
    "<script>alert(1)</script>",
    "{{7*7}} ${7*7}",
    "Zoë Ångström-Øster",
    "李小龍",
    "مرحبا بالعالم",
    "\u202eevil\u202c right-to-left override",
    "e\u0301 combining accent",
    "zero\u200bwidth\u200djoiner",
    "👩‍👩‍👧‍👦 family emoji",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 astral plane",
    "tab\there\nnewline\r\nCRLF",
    "\\u0000 not a real NUL",
    "  leading and trailing spaces  ",
    "ﬁ ligature and Ⅻ roman",
    "x" * 200,
    "é" * 200,
    "🙂" * 200,
]


def _db_row(database: str, user_id: str) -> asyncpg.Record:
    async def fetch() -> asyncpg.Record:
        connection = await asyncpg.connect(
            f"{ADMIN_DSN.rsplit('/', 1)[0]}/{database_name(database)}"
        )
        try:
            return await connection.fetchrow(
                "SELECT email, full_name, is_admin, is_active FROM users WHERE id = $1",
                uuid.UUID(user_id),
            )
        finally:
            await connection.close()

    return asyncio.run(fetch())


@pytest.mark.parametrize("name", EDGE_CASE_NAMES, ids=range(len(EDGE_CASE_NAMES)))
def test_edge_case_names_are_stored_and_returned_verbatim(api: Api, name: str) -> None:
    user = api.sign_up(full_name=name)
    assert user["full_name"] == name
    tokens = api.login(user["email"])
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    # First read fills the cache from the database, the second is served from Redis.
    for _ in range(2):
        response = api.client.get(f"/api/v1/users/{user['id']}", headers=headers)
        assert response.status_code == 200
        assert response.json()["full_name"] == name
    assert _db_row(api.database, user["id"])["full_name"] == name
    # And through an update.
    changed = name[::-1]
    response = api.client.patch(
        f"/api/v1/users/{user['id']}", json={"full_name": changed}, headers=headers
    )
    assert response.status_code == 200 and response.json()["full_name"] == changed
    read = api.client.get(f"/api/v1/users/{user['id']}", headers=headers)
    assert read.json()["full_name"] == changed


def test_sql_looking_email_and_login_do_not_match_anything(api: Api) -> None:
    api.sign_up()
    for username in ("' OR '1'='1", "' OR 1=1 --", "%", "*", "admin'--"):
        response = api.client.post(
            "/api/v1/auth/token", data={"username": username, "password": "' OR '1'='1"}
        )
        assert response.status_code == 401, (username, response.status_code)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("NUL character", b'"nul\\u0000inside"'),
        ("lone high surrogate", b'"broken \\ud800 surrogate"'),
        ("lone low surrogate", b'"broken \\udc00 surrogate"'),
    ],
)
def test_unstorable_strings_are_a_422_not_a_500(api: Api, name: str, payload: bytes) -> None:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate: such
    input must be refused as invalid, not crash the request."""
    email = f"odd-{uuid.uuid4().hex[:8]}@security.example.com"
    body = b'{"email": "' + email.encode() + b'", "password": "' + PASSWORD.encode()
    body += b'", "full_name": ' + payload + b"}"
    response = api.client.post(
        "/api/v1/users", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, (name, response.status_code, response.text[:300])
    _, headers = api.user_with_token()
    me = api.client.get("/api/v1/users/me", headers=headers).json()
    update = api.client.patch(
        f"/api/v1/users/{me['id']}",
        content=b'{"full_name": ' + payload + b"}",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert update.status_code == 422, (name, update.status_code, update.text[:300])


def test_nul_in_a_login_username_is_a_401_not_a_500(api: Api) -> None:
    response = api.client.post(
        "/api/v1/auth/token", data={"username": "a\x00b@example.com", "password": "whatever-1"}
    )
    assert response.status_code in (401, 422), (response.status_code, response.text[:300])


@pytest.mark.parametrize(
    "extra",
    [
        {"is_admin": True},
        {"is_active": False},
        {"id": "00000000-0000-0000-0000-000000000001"},
        {"created_at": "2000-01-01T00:00:00Z"},
        {"password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"},
        {"role": "admin"},
    ],
    ids=lambda extra: next(iter(extra)),
)
def test_sign_up_refuses_fields_it_does_not_own(api: Api, extra: dict[str, Any]) -> None:
    email = f"mass-{uuid.uuid4().hex[:8]}@security.example.com"
    response = api.client.post(
        "/api/v1/users", json={"email": email, "password": PASSWORD, **extra}
    )
    assert response.status_code == 422, (extra, response.status_code)
    assert next(iter(extra)) in response.json()["detail"]


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"is_admin": True}, 403),
        ({"is_active": False}, 403),
        ({"is_admin": True, "full_name": "sneaky"}, 403),
        ({"id": "00000000-0000-0000-0000-000000000001"}, 422),
        ({"password_hash": "x"}, 422),
        ({"created_at": "2000-01-01T00:00:00Z"}, 422),
        ({"adm": True}, 422),
    ],
    ids=lambda value: str(value),
)
def test_a_user_cannot_mass_assign_privileged_fields(
    api: Api, extra: dict[str, Any], status: int
) -> None:
    user, headers = api.user_with_token()
    response = api.client.patch(f"/api/v1/users/{user['id']}", json=extra, headers=headers)
    assert response.status_code == status, (extra, response.status_code, response.text)
    row = _db_row(api.database, user["id"])
    assert row["is_admin"] is False and row["is_active"] is True
    assert row["full_name"] is None  # nothing of a refused request was applied
