"""JWT algorithm confusion and header tricks, against the real service (extends
tests/integration/test_auth.py, which covers alg none, wrong key, expiry, nbf, aud, iss)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import jwt
import orjson
import pytest

from tests.security.conftest import JWT_KEY, Api

# An RSA public key in the form a JWKS or a certificate would publish it. An HS/RS
# confusion attack signs HS256 with these very bytes as the HMAC secret, hoping a
# verifier that accepts both families hands the "public key" to HMAC.
PUBLIC_KEY_PEM = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
mwIDAQAB
-----END PUBLIC KEY-----
"""

_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """Sign by hand: PyJWT itself refuses a PEM as an HMAC secret, an attacker does not."""
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
    alg = header.get("alg", "")
    if key is None:
        signature = b""
    elif alg in _HASHES:
        signature = hmac.new(key, signing_input.encode(), _HASHES[alg]).digest()
    else:
        signature = os.urandom(256)  # what an RS256/ES256 signature looks like on the wire
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture(scope="module")
def victim(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    user = api.sign_up()
    tokens = api.login(user["email"])
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return user, claims


def test_the_genuine_token_works(api: Api, victim: tuple[dict[str, Any], dict[str, Any]]) -> None:
    user, _ = victim
    token = api.login(user["email"])["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    response = api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("name", "header", "key"),
    [
        ("RS256 with an attacker signature", {"alg": "RS256", "typ": "JWT"}, b"rsa"),
        ("ES256", {"alg": "ES256", "typ": "JWT"}, b"ec"),
        ("PS256", {"alg": "PS256", "typ": "JWT"}, b"ps"),
        ("HS256 keyed with the public key PEM", {"alg": "HS256", "typ": "JWT"}, PUBLIC_KEY_PEM),
        (
            "HS256 keyed with the PEM body only",
            {"alg": "HS256", "typ": "JWT"},
            b"".join(PUBLIC_KEY_PEM.splitlines()[1:-1]),
        ),
        # The pre-upgrade HMAC secret still verifies old tokens, never one issued after the
        # first asymmetric key signed.
        (
            "HS256 with the real secret, issued now",
            {"alg": "HS256", "typ": "JWT"},
            JWT_KEY.encode(),
        ),
        # The right secret under another HMAC algorithm: only the configured one is allowed.
        ("HS512 with the real secret", {"alg": "HS512", "typ": "JWT"}, JWT_KEY.encode()),
        ("HS384 with the real secret", {"alg": "HS384", "typ": "JWT"}, JWT_KEY.encode()),
        ("alg None (capitalised)", {"alg": "None", "typ": "JWT"}, None),
        ("alg NONE", {"alg": "NONE", "typ": "JWT"}, None),
        ("alg nOnE", {"alg": "nOnE", "typ": "JWT"}, None),
        ("HS256 with an empty signature", {"alg": "HS256", "typ": "JWT"}, None),
        ("HS256 with an empty secret", {"alg": "HS256", "typ": "JWT"}, b""),
        (
            "embedded jwk of the attacker",
            {"alg": "HS256", "typ": "JWT", "jwk": {"kty": "oct", "k": _b64(b"attacker-key")}},
            b"attacker-key",
        ),
        (
            "jku pointing elsewhere",
            {"alg": "HS256", "typ": "JWT", "jku": "https://attacker.example/jwks.json"},
            b"attacker-key",
        ),
        (
            "kid path traversal to an empty file",
            {"alg": "HS256", "typ": "JWT", "kid": "../../../../dev/null"},
            b"",
        ),
        ("kid SQL injection", {"alg": "HS256", "typ": "JWT", "kid": "x' UNION SELECT 'k"}, b"k"),
    ],
)
def test_confused_or_forged_tokens_are_rejected(
    api: Api,
    victim: tuple[dict[str, Any], dict[str, Any]],
    name: str,
    header: dict[str, Any],
    key: bytes | None,
) -> None:
    _, claims = victim
    token = _token(header, {**claims, "adm": True}, key)
    for path in ("/api/v1/users/me", f"/api/v1/users/{claims['sub']}"):
        response = api.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.headers.get("www-authenticate") == "Bearer", name


def test_a_forged_admin_claim_cannot_list_users(
    api: Api, victim: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _, claims = victim
    token = _token({"alg": "HS256", "typ": "JWT"}, {**claims, "adm": True}, PUBLIC_KEY_PEM)
    response = api.client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text


def test_a_revoked_token_stays_revoked_on_every_worker(api: Api) -> None:
    """Logout writes the revocation to Redis: both gunicorn workers refuse the token."""
    user = api.sign_up()
    tokens = api.login(user["email"])
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert api.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    # Fresh connections, so that both workers are likely to answer at least once.
    statuses = set()
    for _ in range(12):
        response = api.client.get("/api/v1/users/me", headers={**headers, "Connection": "close"})
        statuses.add(response.status_code)
    assert statuses == {401}
