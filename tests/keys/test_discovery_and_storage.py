"""JWKS, RFC 8414 metadata, ES256, and private keys encrypted at rest (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from sqlalchemy import text

from app.infra.key_encryption import KeyEncryption, KeyEncryptionError
from tests.support.app_harness import AppHarness
from tests.support.database import fresh_database


async def test_jwks_is_cacheable_with_an_etag(harness: AppHarness) -> None:
    response = await harness.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["content-type"] == "application/jwk-set+json"
    keys = response.json()["keys"]
    assert keys and all(key["kty"] == "OKP" and key["crv"] == "Ed25519" for key in keys)
    assert all({"kid", "alg", "use", "x"} <= key.keys() and "d" not in key for key in keys)
    etag = response.headers["etag"]
    again = await harness.client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = await harness.client.get("/.well-known/jwks.json", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


async def test_every_token_names_a_published_key(harness: AppHarness) -> None:
    await harness.sign_up("kid@example.com")
    tokens = await harness.login("kid@example.com")
    published = {
        k["kid"] for k in (await harness.client.get("/.well-known/jwks.json")).json()["keys"]
    }
    for name in ("access_token", "refresh_token"):
        header = jwt.get_unverified_header(tokens[name])
        assert header["alg"] == "EdDSA" and header["kid"] in published, name


async def test_metadata_document_describes_this_server_and_nothing_more(
    harness: AppHarness,
) -> None:
    response = await harness.client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == "user-service"
    assert document["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert document["token_endpoint"] == "http://testserver/api/v1/auth/token"
    assert document["introspection_endpoint"] == "http://testserver/api/v1/auth/introspect"
    assert document["revocation_endpoint"] == "http://testserver/api/v1/auth/revoke"
    assert "EdDSA" in document["access_token_signing_alg_values_supported"]
    assert "HS256" not in document["access_token_signing_alg_values_supported"]
    assert (
        "userinfo_endpoint" not in document
        and "id_token_signing_alg_values_supported" not in document
    )
    openid = await harness.client.get("/.well-known/openid-configuration")
    assert openid.status_code == 404


@pytest.fixture(scope="module")
def es256_database() -> str:
    return fresh_database("keys_es256")


async def test_es256_is_an_option(make_harness: Callable[..., Any], es256_database: str) -> None:
    harness: AppHarness = await make_harness(
        DATABASE_URL=es256_database, JWT_ALGORITHM="ES256", PUBLIC_BASE_URL="https://id.example.com"
    )
    await harness.sign_up("ec@example.com")
    tokens = await harness.login("ec@example.com")
    header = jwt.get_unverified_header(tokens["access_token"])
    jwks = (await harness.client.get("/.well-known/jwks.json")).json()["keys"]
    assert header["alg"] == "ES256"
    [key] = [key for key in jwks if key["kid"] == header["kid"]]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    signing_key = jwt.PyJWK(key).key
    claims = jwt.decode(
        tokens["access_token"], signing_key, algorithms=["ES256"], audience="user-service"
    )
    assert claims["typ"] == "access"
    me = await harness.client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    document = (await harness.client.get("/.well-known/oauth-authorization-server")).json()
    assert document["jwks_uri"] == "https://id.example.com/.well-known/jwks.json"


async def test_private_keys_are_encrypted_at_rest(harness: AppHarness) -> None:
    async with harness.app.state.resources.engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT kid, kek_id, private_key_ciphertext FROM signing_keys "
                    "WHERE private_key_ciphertext IS NOT NULL"
                )
            )
        ).all()
    assert rows
    settings = harness.app.state.resources.settings
    right = KeyEncryption(settings.signing_kek)
    wrong = KeyEncryption("another-key-encryption-key-0123456789abcdef")
    for kid, kek_id, ciphertext in rows:
        assert kek_id == right.kek_id
        plaintext = right.decrypt(kid, kek_id, ciphertext)
        assert plaintext not in ciphertext and len(plaintext) > 32
        with pytest.raises(KeyEncryptionError, match="configured SIGNING_KEY_ENCRYPTION_KEY"):
            wrong.decrypt(kid, kek_id, ciphertext)
        with pytest.raises(KeyEncryptionError, match="corrupted"):
            right.decrypt("another-kid", kek_id, ciphertext)  # bound to its row
