"""Upgrading an HS256 deployment: its tokens keep working until they expire, no longer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from tests.support.app_harness import AppHarness
from tests.support.database import fresh_database

SECRET = "the-old-deployments-hmac-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def upgrade_database() -> str:
    return fresh_database("keys_upgrade")


async def _me(harness: AppHarness, token: str) -> int:
    response = await harness.client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


async def test_pre_upgrade_tokens_work_until_they_expire(
    make_harness: Callable[..., Any], upgrade_database: str
) -> None:
    old: AppHarness = await make_harness(
        DATABASE_URL=upgrade_database, JWT_ALGORITHM="HS256", JWT_SECRET_KEY=SECRET
    )
    await old.sign_up("upgrade@example.com")
    before = await old.login("upgrade@example.com")
    header = jwt.get_unverified_header(before["access_token"])
    assert header["alg"] == "HS256" and header["kid"].startswith("hs256-")
    assert (await old.client.get("/.well-known/jwks.json")).json() == {"keys": []}
    claims = jwt.decode(before["access_token"], options={"verify_signature": False})
    # What releases before signing keys issued: the same claims, no kid at all.
    kidless = jwt.encode(claims, SECRET, algorithm="HS256")
    await asyncio.sleep(1.1)  # the upgrade happens in a later second than those tokens' iat

    new: AppHarness = await make_harness(
        clean=False, DATABASE_URL=upgrade_database, JWT_SECRET_KEY=SECRET
    )
    assert await _me(new, before["access_token"]) == 200
    assert await _me(new, kidless) == 200
    refreshed = await new.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert jwt.get_unverified_header(refreshed.json()["access_token"])["alg"] == "EdDSA"
    assert await _me(new, refreshed.json()["access_token"]) == 200

    now = int(time.time())
    issued_after = jwt.encode({**claims, "iat": now, "nbf": now, "exp": now + 600}, SECRET)
    assert await _me(new, issued_after) == 401
    too_long = jwt.encode({**claims, "exp": claims["iat"] + 10**7}, SECRET)
    assert await _me(new, too_long) == 401

    strict: AppHarness = await make_harness(
        clean=False,
        DATABASE_URL=upgrade_database,
        JWT_SECRET_KEY=SECRET,
        JWT_LEGACY_HS256="false",
    )
    assert await _me(strict, kidless) == 401
