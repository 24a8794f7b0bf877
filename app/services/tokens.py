"""JWT access and refresh tokens: claims built from a session, signed, verified, decoded.

Building claims and signing them are two separate small steps: `build_claims` knows what a
token says (all of it derived from the session row, so the same session state always gives
the same claims), the signer (app/services/keys.py) knows only keys and algorithms.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from app.errors import AuthenticationError
from app.observability.metrics import record_auth
from app.schemas.auth import TokenPair
from app.services.keys import TokenSigner
from app.settings import Settings

TokenType = Literal["access", "refresh"]
# Bounded memory for remembered access tokens (about 1 KiB each, claims included).
_VERIFIED_CAPACITY = 10_000
_REQUIRED_CLAIMS = ["sub", "sid", "exp", "iat", "nbf", "jti", "iss", "aud", "typ"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: uuid.UUID
    session_id: uuid.UUID
    jti: str
    issued_at: int
    expires_at: int
    is_admin: bool
    # Refresh tokens: the session's rotation count when issued (0 in access tokens).
    generation: int
    # str(subject), made once per verified token rather than on every request that uses it.
    subject_text: str

    def remaining_seconds(self) -> int:
        return max(0, self.expires_at - int(time.time()))


@dataclass(frozen=True, slots=True)
class SessionGrant:
    """What a session's current token pair is made from (a session row's fields)."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    is_admin: bool
    generation: int
    issued_at: int
    refresh_expires_at: int


def refresh_audience(audience: str) -> str:
    """The audience of refresh tokens. They come back only to this service; an audience of
    their own keeps a service that verifies access tokens offline (same keys, same issuer)
    from ever taking a long-lived refresh token for an access token."""
    return f"{audience}:refresh"


def build_claims(
    kind: TokenType, grant: SessionGrant, *, issuer: str, audience: str, access_ttl: int
) -> dict[str, Any]:
    """The claims of the session's current access or refresh token."""
    expires = grant.issued_at + access_ttl if kind == "access" else grant.refresh_expires_at
    claims: dict[str, Any] = {
        "sub": str(grant.user_id),
        "sid": str(grant.session_id),
        "iat": grant.issued_at,
        "nbf": grant.issued_at,
        "exp": expires,
        "jti": token_id(kind, grant.session_id, grant.generation),
        "iss": issuer,
        "aud": audience if kind == "access" else refresh_audience(audience),
        "typ": kind,
    }
    if kind == "access":
        claims["adm"] = grant.is_admin
    else:
        claims["gen"] = grant.generation
    return claims


def token_id(kind: TokenType, session_id: uuid.UUID, generation: int) -> str:
    """The jti of a session's token of one generation: derived, not random, so re-issuing
    the same generation (the refresh grace window) yields the same ids."""
    return uuid.uuid5(session_id, f"{kind}:{generation}").hex


def refresh_hash(jti: str) -> str:
    """What a session row keeps of a refresh token: a hash of its id. Not of the token text:
    a signer may be randomised (ES256) or change keys between two issues of one pair."""
    return hashlib.sha256(jti.encode()).hexdigest()


class TokenService:
    def __init__(self, settings: Settings, signer: TokenSigner) -> None:
        self._signer = signer
        self._signer_version = signer.version
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.access_ttl = settings.access_token_ttl_seconds
        self.refresh_ttl = settings.refresh_token_ttl_seconds
        self._verified: dict[str, TokenClaims] = {}

    def pair_for(self, grant: SessionGrant) -> TokenPair:
        """The session's current pair: the same grant always gives the same tokens."""
        access, refresh = (
            self._signer.sign(
                build_claims(
                    kind,
                    grant,
                    issuer=self._issuer,
                    audience=self._audience,
                    access_ttl=self.access_ttl,
                )
            )
            for kind in ("access", "refresh")
        )
        remaining = grant.issued_at + self.access_ttl - int(time.time())
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=max(0, remaining))

    def decode(self, token: str, kind: TokenType) -> TokenClaims:
        """Verify signature, algorithm, expiry, audience, issuer and type; no I/O.

        Access tokens come back on every request of a session: their verified claims are
        remembered by exact token text until they expire (the session's state is still
        checked on every request). Verifying costs far more than the lookup."""
        if self._signer_version != self._signer.version:
            # A key stopped being accepted: forget what it verified.
            self._verified.clear()
            self._signer_version = self._signer.version
        if kind == "access":
            remembered = self._verified.get(token)
            if remembered is not None:
                if remembered.expires_at > time.time():
                    return remembered
                del self._verified[token]
        claims = self._verify(token, kind)
        if kind == "access":
            if len(self._verified) >= _VERIFIED_CAPACITY:
                self._verified.clear()
            self._verified[token] = claims
        return claims

    def _verify(self, token: str, kind: TokenType) -> TokenClaims:
        try:
            # By kid, with the algorithm pinned per key: "none" and any other family refused.
            claims = self._signer.verify(
                token,
                audience=self._audience if kind == "access" else refresh_audience(self._audience),
                issuer=self._issuer,
                required=_REQUIRED_CLAIMS,
                leeway=5,
            )
            if claims["typ"] != kind:
                raise jwt.InvalidTokenError("wrong token type")
            subject = uuid.UUID(claims["sub"])
            return TokenClaims(
                subject=subject,
                subject_text=str(subject),
                session_id=uuid.UUID(claims["sid"]),
                jti=str(claims["jti"]),
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
                is_admin=bool(claims.get("adm", False)),
                generation=int(claims.get("gen", 0)),
            )
        except jwt.ExpiredSignatureError as error:
            record_auth("invalid_token_rejected")
            raise AuthenticationError("The token has expired.") from error
        except (jwt.InvalidTokenError, ValueError, TypeError, KeyError) as error:
            record_auth("invalid_token_rejected")
            raise AuthenticationError("The token is invalid.") from error
