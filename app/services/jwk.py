"""Signing key material: generation, JWK form, RFC 7638 thumbprints as key ids."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

AsymmetricAlgorithm = Literal["EdDSA", "ES256"]
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A freshly generated key: its id, public JWK and PKCS#8 private bytes."""

    kid: str
    algorithm: AsymmetricAlgorithm
    public_jwk: dict[str, str]
    private_pkcs8: bytes


def public_jwk(public: PublicKey, algorithm: AsymmetricAlgorithm) -> dict[str, str]:
    """The public half as a JWK (RFC 8037 for Ed25519, RFC 7518 for P-256), without `kid`."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    numbers = public.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order."""
    required = ("crv", "kty", "x") if jwk["kty"] == "OKP" else ("crv", "kty", "x", "y")
    canonical = orjson.dumps({name: jwk[name] for name in required}, option=orjson.OPT_SORT_KEYS)
    return b64url(hashlib.sha256(canonical).digest())


def generate(algorithm: AsymmetricAlgorithm) -> KeyMaterial:
    private: PrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else ec.generate_private_key(ec.SECP256R1())
    )
    jwk = public_jwk(private.public_key(), algorithm)
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyMaterial(thumbprint(jwk), algorithm, jwk, pkcs8)


def load_private(pkcs8: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(pkcs8, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def load_public(jwk: dict[str, Any]) -> PublicKey:
    """The verification key of a stored JWK; only the two shapes this service writes."""
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_unb64(jwk["x"]), "big"),
            int.from_bytes(_unb64(jwk["y"]), "big"),
            ec.SECP256R1(),
        )
        return numbers.public_key()
    raise ValueError(f"unsupported JWK kty={jwk.get('kty')!r} crv={jwk.get('crv')!r}")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
