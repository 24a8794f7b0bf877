"""A service that verifies access tokens offline from the JWKS never accepts a refresh token
in their place: refresh tokens carry an audience of their own."""

from __future__ import annotations

import jwt
import pytest

from tests.support.app_harness import AppHarness


async def _verify_as_a_consumer(harness: AppHarness, token: str) -> dict[str, object]:
    """What another microservice does: the JWKS, the key by kid, the access audience."""
    jwks = (await harness.client.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(entry) for entry in jwks["keys"] if entry["kid"] == kid)
    claims: dict[str, object] = jwt.decode(
        token, key.key, algorithms=[key.algorithm_name], audience="user-service"
    )
    return claims


async def test_a_refresh_token_does_not_pass_as_an_access_token(harness: AppHarness) -> None:
    await harness.sign_up("consumer-aud@example.com")
    tokens = await harness.login("consumer-aud@example.com")

    access = await _verify_as_a_consumer(harness, tokens["access_token"])
    assert access["typ"] == "access"
    with pytest.raises(jwt.InvalidAudienceError):
        await _verify_as_a_consumer(harness, tokens["refresh_token"])

    # The service itself still takes its refresh token back.
    rotated = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
