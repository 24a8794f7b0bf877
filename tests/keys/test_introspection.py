"""Introspection (RFC 7662): listed service clients only, rate limited, and `active` follows
the session state the moment it changes."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import text

from app.infra.key_encryption import KeyEncryption
from app.services import jwk
from tests.support.app_harness import AppHarness
from tests.support.rate_windows import room_wait

CLIENTS = "orders:orders-secret-0123456789abcdef, billing:billing-secret-0123456789abcdef"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


ORDERS = _basic("orders", "orders-secret-0123456789abcdef")


async def _introspect(
    harness: AppHarness, token: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await harness.client.post(
        "/api/v1/auth/introspect",
        data={"token": token},
        headers=ORDERS if headers is None else headers,
    )


async def _active(harness: AppHarness, token: str) -> bool:
    response = await _introspect(harness, token)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    active: bool = response.json()["active"]
    return active


async def test_only_listed_clients_may_introspect(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(INTROSPECTION_CLIENTS=CLIENTS)
    _, headers = await harness.user_with_token("intro-auth@example.com")
    token = headers["Authorization"].removeprefix("Bearer ")
    for name, attempt in {
        "no credentials": {},
        "bearer instead of basic": headers,
        "unlisted client": _basic("mallory", "orders-secret-0123456789abcdef"),
        "wrong secret": _basic("orders", "not-the-secret"),
        "garbage": {"Authorization": "Basic !!!"},
    }.items():
        response = await _introspect(harness, token, attempt)
        assert response.status_code == 401, name
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.headers["www-authenticate"].startswith("Basic"), name
        assert "active" not in response.json(), name
    billing = await _introspect(
        harness, token, _basic("billing", "billing-secret-0123456789abcdef")
    )
    assert billing.status_code == 200 and billing.json()["active"] is True


async def test_a_service_without_listed_clients_refuses_everyone(harness: AppHarness) -> None:
    _, headers = await harness.user_with_token("nobody@example.com")
    response = await _introspect(harness, headers["Authorization"].removeprefix("Bearer "))
    assert response.status_code == 401


async def test_active_follows_the_session(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(INTROSPECTION_CLIENTS=CLIENTS)
    user = await harness.sign_up("intro@example.com")
    tokens = await harness.login("intro@example.com")
    live = await _introspect(harness, tokens["access_token"])
    body = live.json()
    assert body["active"] is True and body["sub"] == user["id"]
    assert body["token_type"] == "Bearer" and body["iss"] == "user-service"
    assert body["exp"] > time.time()
    assert (
        body["sid"]
        == jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    )
    assert await _active(harness, tokens["refresh_token"]) is False

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await harness.client.post("/api/v1/auth/logout", headers=bearer)).status_code == 204
    assert await _active(harness, tokens["access_token"]) is False

    second = await harness.login("intro@example.com")
    other = await harness.login("intro@example.com")
    assert await _active(harness, other["access_token"]) is True
    # A password change revokes every other session of the user, in the same second too.
    changed = await harness.client.patch(
        f"/api/v1/users/{user['id']}",
        json={"password": "a brand new password"},
        headers={"Authorization": f"Bearer {second['access_token']}"},
    )
    assert changed.status_code == 200
    assert await _active(harness, other["access_token"]) is False
    assert await _active(harness, second["access_token"]) is True


async def test_expired_and_forged_tokens_are_inactive(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(INTROSPECTION_CLIENTS=CLIENTS)
    await harness.sign_up("intro-forged@example.com")
    tokens = await harness.login("intro-forged@example.com")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    resources = harness.app.state.resources
    async with resources.engine.connect() as connection:
        kek_id, ciphertext = (
            await connection.execute(
                text("SELECT kek_id, private_key_ciphertext FROM signing_keys WHERE kid = :k"),
                {"k": kid},
            )
        ).one()
    real = jwk.load_private(
        KeyEncryption(resources.settings.signing_kek).decrypt(kid, kek_id, ciphertext)
    )
    now = int(time.time())
    expired = jwt.encode(
        {**claims, "iat": now - 100, "nbf": now - 100, "exp": now - 50},
        real,
        algorithm="EdDSA",
        headers={"kid": kid},
    )
    forged = jwt.encode(
        {**claims, "adm": True}, ed25519.Ed25519PrivateKey.generate(), "EdDSA", {"kid": kid}
    )
    for token in (expired, forged, "not.a.token", tokens["access_token"][:-3] + "AAA"):
        assert await _active(harness, token) is False
    assert await _active(harness, tokens["access_token"]) is True


async def test_introspection_is_rate_limited_per_client(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(
        INTROSPECTION_CLIENTS=CLIENTS, RATE_LIMIT_INTROSPECTION="2/minute"
    )
    _, headers = await harness.user_with_token("intro-rl@example.com")
    token = headers["Authorization"].removeprefix("Bearer ")
    await asyncio.sleep(room_wait(60, 5))  # the limit is a fixed window of a minute
    codes = [(await _introspect(harness, token)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    other = await _introspect(harness, token, _basic("billing", "billing-secret-0123456789abcdef"))
    assert other.status_code == 200


async def test_discovery_names_the_introspection_endpoint(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(INTROSPECTION_CLIENTS=CLIENTS)
    document = (await harness.client.get("/.well-known/oauth-authorization-server")).json()
    path = httpx.URL(document["introspection_endpoint"]).path
    _, headers = await harness.user_with_token("intro-disc@example.com")
    response = await harness.client.post(
        path, data={"token": headers["Authorization"].removeprefix("Bearer ")}, headers=ORDERS
    )
    assert response.json()["active"] is True


async def test_revocation_ends_the_session_of_a_refresh_token(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(INTROSPECTION_CLIENTS=CLIENTS)
    await harness.sign_up("revoke@example.com")
    first = await harness.login("revoke@example.com")
    second = await harness.login("revoke@example.com")
    response = await harness.client.post(
        "/api/v1/auth/revoke",
        data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
    )
    assert response.status_code == 200 and response.content == b""
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert await _active(harness, first["access_token"]) is False  # the whole session ended
    assert await _active(harness, second["access_token"]) is True  # another session did not
    # An access token (the hint is only a hint) ends its session too.
    response = await harness.client.post(
        "/api/v1/auth/revoke", data={"token": second["access_token"]}
    )
    assert response.status_code == 200
    assert await _active(harness, second["access_token"]) is False
    # Invalid, expired or already revoked tokens are not an error (RFC 7009 2.2).
    for token in ("garbage", first["refresh_token"]):
        response = await harness.client.post("/api/v1/auth/revoke", data={"token": token})
        assert response.status_code == 200
    missing = await harness.client.post("/api/v1/auth/revoke", data={})
    assert missing.status_code == 422
