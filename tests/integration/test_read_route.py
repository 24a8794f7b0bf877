"""GET /users/{user_id} runs its dependencies by hand for ordinary requests: every answer
must be the one FastAPI's generic handler gives, ordinary or not."""

from __future__ import annotations

import uuid

import orjson

from tests.support.app_harness import AppHarness


async def test_an_ordinary_read_answers_as_the_generic_handler_would(harness: AppHarness) -> None:
    user, headers = await harness.user_with_token("ordinary-read@example.com")
    for _ in range(2):  # a cache miss, then a hit
        response = await harness.client.get(f"/api/v1/users/{user['id']}", headers=headers)
        assert response.status_code == 200, response.text
        assert orjson.loads(response.content) == user
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
        assert int(response.headers["ratelimit-remaining"]) >= 0
        assert response.headers["ratelimit-limit"]
        # Each header once: the dependency's headers join the response's, never twice.
        names = [name.lower() for name, _ in response.headers.multi_items()]
        assert sorted(set(names)) == sorted(names), names


async def test_unusual_requests_get_fastapi_s_own_answers(harness: AppHarness) -> None:
    user, headers = await harness.user_with_token("unusual-read@example.com")
    # Another spelling of the same UUID: FastAPI's validation accepts it.
    plain = uuid.UUID(user["id"]).hex
    response = await harness.client.get(f"/api/v1/users/{plain}", headers=headers)
    assert response.status_code == 200, response.text
    assert orjson.loads(response.content) == user

    response = await harness.client.get("/api/v1/users/not-a-uuid", headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == ["path.user_id"]

    for authorization in (None, "Basic dXNlcjpwYXNz", "Bearer"):
        sent = {"authorization": authorization} if authorization else {}
        response = await harness.client.get(f"/api/v1/users/{user['id']}", headers=sent)
        assert response.status_code == 401, (authorization, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"

    response = await harness.client.get(
        f"/api/v1/users/{user['id']}", headers={"authorization": "Bearer not.a.token"}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"

    missing = uuid.uuid4()
    response = await harness.client.get(f"/api/v1/users/{missing}", headers=headers)
    assert response.status_code == 404
    assert response.json()["instance"] == f"/api/v1/users/{missing}"
