"""Users API on the real PostgreSQL and Redis: every route, happy paths and failures."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from tests.support.app_harness import PASSWORD, AppHarness
from tests.support.database import committed_under

PROBLEM = "application/problem+json"


async def test_sign_up_returns_the_user_without_secrets(harness: AppHarness) -> None:
    response = await harness.client.post(
        "/api/v1/users",
        json={"email": "Ada@Example.com", "password": "long enough pw", "full_name": "Ada"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["full_name"] == "Ada"
    assert body["is_admin"] is False
    assert "password" not in response.text and "hash" not in response.text
    assert response.headers["location"] == f"/api/v1/users/{body['id']}"


async def test_duplicate_email_is_a_conflict_case_insensitively(harness: AppHarness) -> None:
    await harness.sign_up("dup@example.com")
    response = await harness.client.post(
        "/api/v1/users", json={"email": "DUP@example.com", "password": "another password"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 409 and body["type"].endswith("/conflict")
    assert body["request_id"] == response.headers["x-request-id"]


async def test_bad_payload_names_the_fields(harness: AppHarness) -> None:
    response = await harness.client.post(
        "/api/v1/users", json={"email": "not-an-email", "password": "short"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"body.email", "body.password"}


async def test_read_me_and_other_user(harness: AppHarness) -> None:
    me, headers = await harness.user_with_token("me@example.com")
    other = await harness.sign_up("other@example.com")
    response = await harness.client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 200 and response.json()["id"] == me["id"]
    response = await harness.client.get(f"/api/v1/users/{other['id']}", headers=headers)
    assert response.status_code == 200 and response.json()["email"] == "other@example.com"


async def test_reads_require_a_token(harness: AppHarness) -> None:
    response = await harness.client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == PROBLEM


async def test_first_read_fills_the_cache_and_second_is_a_hit(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    _, headers = await harness.user_with_token("reader@example.com")
    target = await harness.sign_up("target@example.com", full_name="Before")
    key = harness.app.state.resources.cache.key(uuid.UUID(target["id"]))
    assert await redis_client.get(key) is None
    first = await harness.client.get(f"/api/v1/users/{target['id']}", headers=headers)
    cached = await redis_client.get(key)
    assert cached is not None and b"Before" in cached
    ttl = await redis_client.ttl(key)
    assert 0 < ttl <= 330  # CACHE_TTL_SECONDS 300 with up to 10% jitter
    second = await harness.client.get(f"/api/v1/users/{target['id']}", headers=headers)
    assert first.json() == second.json()


async def test_update_and_delete_invalidate_the_cache(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    me, headers = await harness.user_with_token("writer@example.com")
    key = harness.app.state.resources.cache.key(uuid.UUID(me["id"]))
    await harness.client.get(f"/api/v1/users/{me['id']}", headers=headers)
    assert await redis_client.exists(key)
    response = await harness.client.patch(
        f"/api/v1/users/{me['id']}", json={"full_name": "After"}, headers=headers
    )
    assert response.status_code == 200 and response.json()["full_name"] == "After"
    assert not await redis_client.exists(key)
    response = await harness.client.get(f"/api/v1/users/{me['id']}", headers=headers)
    assert response.json()["full_name"] == "After"
    assert b"After" in (await redis_client.get(key) or b"")
    response = await harness.client.delete(f"/api/v1/users/{me['id']}", headers=headers)
    assert response.status_code == 204
    assert not await redis_client.exists(key)


async def test_missing_user_is_404_and_the_404_is_cached(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    _, headers = await harness.user_with_token("seeker@example.com")
    missing = uuid.uuid4()
    response = await harness.client.get(f"/api/v1/users/{missing}", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    key = harness.app.state.resources.cache.key(missing)
    assert await redis_client.get(key) == b"\x00"
    assert 0 < await redis_client.ttl(key) <= 15
    again = await harness.client.get(f"/api/v1/users/{missing}", headers=headers)
    assert again.status_code == 404


async def test_cannot_change_or_delete_another_user(harness: AppHarness) -> None:
    _, headers = await harness.user_with_token("mallory@example.com")
    victim = await harness.sign_up("victim@example.com")
    response = await harness.client.patch(
        f"/api/v1/users/{victim['id']}", json={"full_name": "pwned"}, headers=headers
    )
    assert response.status_code == 403
    response = await harness.client.delete(f"/api/v1/users/{victim['id']}", headers=headers)
    assert response.status_code == 403


async def test_user_cannot_make_itself_admin(harness: AppHarness) -> None:
    me, headers = await harness.user_with_token("climber@example.com")
    response = await harness.client.patch(
        f"/api/v1/users/{me['id']}", json={"is_admin": True}, headers=headers
    )
    assert response.status_code == 403
    response = await harness.client.patch(
        f"/api/v1/users/{me['id']}", json={"role": "admin"}, headers=headers
    )
    assert response.status_code == 422
    assert (await harness.client.get("/api/v1/users/me", headers=headers)).json()[
        "is_admin"
    ] is False


async def test_admin_lists_users_with_keyset_pages_and_others_cannot(harness: AppHarness) -> None:
    _, user_headers = await harness.user_with_token("plain@example.com")
    assert (await harness.client.get("/api/v1/users", headers=user_headers)).status_code == 403
    await harness.sign_up("boss@example.com")
    await harness.make_admin("boss@example.com")
    tokens = await harness.login("boss@example.com")
    admin = {"Authorization": f"Bearer {tokens['access_token']}"}
    for index in range(5):
        await harness.sign_up(f"member{index}@example.com")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await harness.client.get("/api/v1/users", params=params, headers=admin)).json()
        seen.extend(item["email"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    too_big = await harness.client.get("/api/v1/users", params={"limit": 1000}, headers=admin)
    assert too_big.status_code == 422
    bad_cursor = await harness.client.get("/api/v1/users", params={"cursor": "zz"}, headers=admin)
    assert bad_cursor.status_code == 400


async def test_admin_may_change_another_user(harness: AppHarness) -> None:
    victim = await harness.sign_up("managed@example.com")
    await harness.sign_up("root@example.com")
    await harness.make_admin("root@example.com")
    tokens = await harness.login("root@example.com")
    admin = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = await harness.client.patch(
        f"/api/v1/users/{victim['id']}", json={"is_active": False}, headers=admin
    )
    assert response.status_code == 200 and response.json()["is_active"] is False
    # The right password: only the deactivation can refuse it.
    login = await harness.client.post(
        "/api/v1/auth/token", data={"username": "managed@example.com", "password": PASSWORD}
    )
    assert login.status_code == 401


async def test_fifty_concurrent_cold_reads_query_the_database_once(harness: AppHarness) -> None:
    _, headers = await harness.user_with_token("crowd@example.com")
    target = await harness.sign_up("celebrity@example.com")
    statements: list[str] = []
    engine = harness.app.state.resources.engine.sync_engine

    from sqlalchemy import event

    def count(_c: object, _cu: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        responses = await asyncio.gather(
            *(
                harness.client.get(f"/api/v1/users/{target['id']}", headers=headers)
                for _ in range(50)
            )
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert {response.status_code for response in responses} == {200}
    assert len(statements) == 1


async def test_twenty_concurrent_sign_ups_with_one_email_create_one_user(
    harness: AppHarness,
) -> None:
    responses = await asyncio.gather(
        *(
            harness.client.post(
                "/api/v1/users", json={"email": "race@example.com", "password": f"password-{i}"}
            )
            for i in range(20)
        )
    )
    codes = sorted(response.status_code for response in responses)
    assert codes == [201] + [409] * 19
    from sqlalchemy import text

    async with harness.app.state.resources.engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM users WHERE email = 'race@example.com'")
        )
    assert count == 1


async def _admin(harness: AppHarness, email: str) -> tuple[dict[str, Any], dict[str, str]]:
    user = await harness.sign_up(email)
    await harness.make_admin(email)
    tokens = await harness.login(email)
    return user, {"Authorization": f"Bearer {tokens['access_token']}"}


def _cursor(created_at: object, user_id: object) -> str:
    raw = orjson.dumps([created_at, user_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_tampered_cursors_are_client_errors(harness: AppHarness) -> None:
    """A cursor is opaque but travels through the client: whatever it was turned into, the
    answer is a 400 problem, never a 500."""
    _, admin = await _admin(harness, "pager@example.com")
    good_id = str(uuid.uuid4())
    tampered = {
        "id not a uuid": _cursor("2024-01-01T00:00:00+00:00", "not-a-uuid"),
        "id a number": _cursor("2024-01-01T00:00:00+00:00", 12345),
        "id a list": _cursor("2024-01-01T00:00:00+00:00", [1, 2]),
        "id null": _cursor("2024-01-01T00:00:00+00:00", None),
        "year 1 east of UTC": _cursor("0001-01-01T00:00:00+14:00", good_id),
        "year 9999 west of UTC": _cursor("9999-12-31T23:59:59-14:00", good_id),
        "timestamp a number": _cursor(1e300, good_id),
        "three parts": base64.urlsafe_b64encode(b'["a", "b", "c"]').decode(),
        "an object": base64.urlsafe_b64encode(b'{"a": 1, "b": 2}').decode(),
        "not json": base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    }
    for name, cursor in tampered.items():
        response = await harness.client.get(
            "/api/v1/users", params={"cursor": cursor}, headers=admin
        )
        assert response.status_code == 400, (name, response.text)
        assert response.headers["content-type"] == PROBLEM, name
        assert response.json()["type"].endswith("/invalid-cursor"), name


async def test_the_last_admin_cannot_be_demoted_deactivated_or_deleted(
    harness: AppHarness,
) -> None:
    me, admin = await _admin(harness, "only-admin@example.com")
    url = f"/api/v1/users/{me['id']}"
    for change in ({"is_admin": False}, {"is_active": False}):
        response = await harness.client.patch(url, json=change, headers=admin)
        assert response.status_code == 409, (change, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert "last admin" in response.json()["detail"]
    response = await harness.client.delete(url, headers=admin)
    assert response.status_code == 409
    assert (await harness.client.get("/api/v1/users/me", headers=admin)).json()["is_admin"]
    # With a second admin the first may step down; then the second is the last one.
    second, second_admin = await _admin(harness, "second-admin@example.com")
    response = await harness.client.patch(url, json={"is_admin": False}, headers=admin)
    assert response.status_code == 200 and response.json()["is_admin"] is False
    response = await harness.client.delete(f"/api/v1/users/{second['id']}", headers=second_admin)
    assert response.status_code == 409


async def test_two_admins_demoting_each_other_at_once_leave_one(harness: AppHarness) -> None:
    first, first_headers = await _admin(harness, "duel-a@example.com")
    second, second_headers = await _admin(harness, "duel-b@example.com")
    responses = await asyncio.gather(
        harness.client.patch(
            f"/api/v1/users/{second['id']}", json={"is_admin": False}, headers=first_headers
        ),
        harness.client.patch(
            f"/api/v1/users/{first['id']}", json={"is_admin": False}, headers=second_headers
        ),
    )
    # Whichever ran second either saw the other's demotion (409) or was refused because its
    # own token was revoked by it (401): never both demoted.
    codes = sorted(response.status_code for response in responses)
    assert codes[0] == 200 and codes[1] in {401, 409}, [r.text for r in responses]
    from sqlalchemy import text

    async with harness.app.state.resources.engine.connect() as connection:
        admins = await connection.scalar(
            text("SELECT count(*) FROM users WHERE is_admin AND is_active")
        )
    assert admins == 1


@pytest.mark.parametrize(
    "change",
    [{"full_name": "Renamed"}, {"password": "a new long password"}],
    ids=["name", "password"],
)
async def test_a_change_to_a_user_deleted_meanwhile_is_a_404(
    harness: AppHarness, database_url: str, change: dict[str, str]
) -> None:
    """The row is read, then deleted by another transaction before the change is written:
    the answer is the 404 of a user that no longer exists, not a 500."""
    me, headers = await harness.user_with_token("deleted-meanwhile@example.com")
    # The change has read the row (the delete is not yet committed) and waits on the deleting
    # transaction's row lock to write it.
    response = await committed_under(
        database_url,
        "DELETE FROM users WHERE id = $1",
        uuid.UUID(me["id"]),
        racing=lambda: harness.client.patch(
            f"/api/v1/users/{me['id']}", json=change, headers=headers
        ),
        describe=lambda answer: answer.text,
        within=10,
    )
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM
