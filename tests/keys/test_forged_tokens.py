"""Forged tokens against the key ring: unknown kid, deleted key, HS256 keyed with the public
key, jwk/jku/x5u header injection, alg none. Every one is a 401 problem."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from prometheus_client import REGISTRY
from sqlalchemy import text

from app.infra.key_encryption import KeyEncryption
from app.services import jwk
from tests.support.app_harness import AppHarness
from tests.support.database import fresh_database


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """By hand: PyJWT refuses a PEM as an HMAC secret, an attacker does not."""
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _unknown_kid_total() -> float:
    return REGISTRY.get_sample_value("user_service_tokens_unknown_kid_total") or 0.0


@pytest.fixture(scope="module")
def forged_database() -> str:
    return fresh_database("keys_forged")


@pytest.fixture
async def victim(
    make_harness: Callable[..., Any], forged_database: str
) -> tuple[AppHarness, dict[str, Any], dict[str, Any]]:
    harness: AppHarness = await make_harness(DATABASE_URL=forged_database)
    await harness.sign_up("victim@example.com")
    tokens = await harness.login("victim@example.com")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return harness, tokens, claims


async def _status(harness: AppHarness, token: str) -> int:
    response = await harness.client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    if response.status_code == 401:
        assert response.headers["content-type"] == "application/problem+json"
    return response.status_code


async def _real_private_key(harness: AppHarness, kid: str) -> jwk.PrivateKey:
    resources = harness.app.state.resources
    async with resources.engine.connect() as connection:
        kek_id, ciphertext = (
            await connection.execute(
                text("SELECT kek_id, private_key_ciphertext FROM signing_keys WHERE kid = :k"),
                {"k": kid},
            )
        ).one()
    plaintext = KeyEncryption(resources.settings.signing_kek).decrypt(kid, kek_id, ciphertext)
    return jwk.load_private(plaintext)


async def test_forged_tokens_are_refused(
    victim: tuple[AppHarness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, tokens, claims = victim
    assert await _status(harness, tokens["access_token"]) == 200
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    forged_claims = {**claims, "adm": True}
    published = (await harness.client.get("/.well-known/jwks.json")).json()["keys"]
    [public] = [key for key in published if key["kid"] == kid]
    public_pem = jwt.PyJWK(public).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attacker = ed25519.Ed25519PrivateKey.generate()
    attacker_jwk = jwk.public_jwk(attacker.public_key(), "EdDSA")
    attacker_kid = jwk.thumbprint(attacker_jwk)
    real = await _real_private_key(harness, kid)

    def eddsa(header: dict[str, Any], key: Any = attacker) -> str:
        extra = {name: value for name, value in header.items() if name != "alg"}
        return jwt.encode(forged_claims, key, algorithm="EdDSA", headers=extra)

    def unsigned(header: dict[str, Any]) -> str:
        return f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(forged_claims))}."

    forged = {
        "unknown kid": eddsa({"kid": attacker_kid}),
        "our kid, attacker signature": eddsa({"kid": kid}),
        "HS256 keyed with the public key PEM": _hs256(
            {"alg": "HS256", "kid": kid}, forged_claims, public_pem
        ),
        "HS256 keyed with the raw public key": _hs256(
            {"alg": "HS256", "kid": kid},
            forged_claims,
            base64.urlsafe_b64decode(public["x"] + "=="),
        ),
        "HS256 keyed with the JWK text": _hs256(
            {"alg": "HS256", "kid": kid}, forged_claims, orjson.dumps(public)
        ),
        "embedded jwk": eddsa({"kid": attacker_kid, "jwk": attacker_jwk}),
        "embedded jwk under our kid": eddsa({"kid": kid, "jwk": attacker_jwk}),
        "jku to the attacker": eddsa({"kid": attacker_kid, "jku": "https://attacker.example/jwks"}),
        "x5u to the attacker": eddsa(
            {"kid": attacker_kid, "x5u": "https://attacker.example/c.pem"}
        ),
        # Genuinely signed with our key, but asking the verifier to fetch keys elsewhere.
        "jku on a genuine signature": eddsa(
            {"kid": kid, "jku": "https://attacker.example/j"}, real
        ),
        "alg none": unsigned({"alg": "none", "kid": kid}),
        "alg none without kid": unsigned({"alg": "none"}),
        "alg None": unsigned({"alg": "None", "kid": kid}),
        "ES256 under an EdDSA kid": jwt.encode(
            forged_claims,
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": kid},
        ),
    }
    before = _unknown_kid_total()
    for name, token in forged.items():
        assert await _status(harness, token) == 401, name
    # Only the unknown kid reaches the key lookup: foreign headers are refused before it.
    assert _unknown_kid_total() - before == 1
    # The genuine signature with our own key and no extra header still passes.
    assert await _status(harness, eddsa({"kid": kid}, real)) == 200


async def test_a_deleted_key_is_refused_at_once(
    victim: tuple[AppHarness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, tokens, _ = victim
    resources = harness.app.state.resources
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    assert await _status(harness, tokens["access_token"]) == 200
    manager = resources.keys._manager
    lines = await manager.retire(kid, force=True)
    assert any("deleted compromised key" in line for line in lines)
    await resources.keys.refresh()
    assert await _status(harness, tokens["access_token"]) == 401
    published = (await harness.client.get("/.well-known/jwks.json")).json()["keys"]
    assert kid not in {key["kid"] for key in published}
    fresh = await harness.login("victim@example.com")
    new_kid = jwt.get_unverified_header(fresh["access_token"])["kid"]
    assert new_kid != kid and await _status(harness, fresh["access_token"]) == 200


async def test_a_retired_then_deleted_key_is_refused(
    victim: tuple[AppHarness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, _, _ = victim
    resources = harness.app.state.resources
    tokens = await harness.login("victim@example.com")
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    manager = resources.keys._manager
    await manager.rotate()  # publishes a next key
    # Pretend the next key has been published for longer than max-age + reload.
    async with resources.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE signing_keys SET published_at = published_at - interval '1 hour' "
                "WHERE activated_at IS NULL AND deleted_at IS NULL"
            )
        )
    assert any(line.startswith("activated") for line in await manager.rotate())
    await resources.keys.refresh()
    # Retired, still published: the tokens it signed keep working.
    assert await _status(harness, tokens["access_token"]) == 200
    new = await harness.login("victim@example.com")
    assert jwt.get_unverified_header(new["access_token"])["kid"] != kid
    lines = await manager.retire(kid, force=True)
    assert lines == [f"deleted {kid} now; tokens it signed are refused"]
    await resources.keys.refresh()
    assert await _status(harness, tokens["access_token"]) == 401
    assert await _status(harness, new["access_token"]) == 200
