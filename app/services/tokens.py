"""JWT access and refresh tokens: issuing, verifying, rotating, revoking."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from app.errors import AuthenticationError
from app.infra.token_store import Rotation, TokenStore
from app.observability.metrics import record_auth
from app.schemas.auth import TokenPair
from app.services.keys import TokenSigner
from app.settings import Settings

TokenType = Literal["access", "refresh"]
# Bounded memory for remembered access tokens (about 1 KiB each, claims included).
_VERIFIED_CAPACITY = 10_000
_REQUIRED_CLAIMS = ["sub", "exp", "iat", "nbf", "jti", "iss", "aud", "typ", "fam"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: uuid.UUID
    jti: str
    family: str
    issued_at: int
    expires_at: int
    is_admin: bool

    def remaining_seconds(self) -> int:
        return max(0, self.expires_at - int(time.time()))


class TokenService:
    def __init__(self, settings: Settings, store: TokenStore, signer: TokenSigner) -> None:
        self._signer = signer
        self._signer_version = signer.version
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._access_ttl = settings.access_token_ttl_seconds
        self._refresh_ttl = settings.refresh_token_ttl_seconds
        self._store = store
        self._verified: dict[str, TokenClaims] = {}

    def _encode(
        self, *, subject: uuid.UUID, family: str, kind: TokenType, is_admin: bool
    ) -> tuple[str, str]:
        now = int(time.time())
        jti = uuid.uuid4().hex
        ttl = self._access_ttl if kind == "access" else self._refresh_ttl
        claims: dict[str, Any] = {
            "sub": str(subject),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
            "iss": self._issuer,
            "aud": self._audience,
            "typ": kind,
            "fam": family,
        }
        if kind == "access":
            claims["adm"] = is_admin
        return self._signer.sign(claims), jti

    def decode(self, token: str, kind: TokenType) -> TokenClaims:
        """Verify signature, algorithm, expiry, audience, issuer and type; no Redis involved.

        Access tokens come back on every request of a session: their verified claims are
        remembered by exact token text until they expire (revocation is still checked in
        Redis on every request). Verifying costs far more than the lookup."""
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
                audience=self._audience,
                issuer=self._issuer,
                required=_REQUIRED_CLAIMS,
                leeway=5,
            )
            if claims["typ"] != kind:
                raise jwt.InvalidTokenError("wrong token type")
            return TokenClaims(
                subject=uuid.UUID(claims["sub"]),
                jti=str(claims["jti"]),
                family=str(claims["fam"]),
                issued_at=int(claims["iat"]),
                expires_at=int(claims["exp"]),
                is_admin=bool(claims.get("adm", False)),
            )
        except jwt.ExpiredSignatureError as error:
            record_auth("invalid_token_rejected")
            raise AuthenticationError("The token has expired.") from error
        except (jwt.InvalidTokenError, ValueError, TypeError, KeyError) as error:
            record_auth("invalid_token_rejected")
            raise AuthenticationError("The token is invalid.") from error

    async def issue(self, subject: uuid.UUID, *, is_admin: bool) -> TokenPair:
        family = uuid.uuid4().hex
        refresh, refresh_jti = self._encode(
            subject=subject, family=family, kind="refresh", is_admin=is_admin
        )
        await self._store.start_family(family, refresh_jti, self._refresh_ttl)
        access, _ = self._encode(subject=subject, family=family, kind="access", is_admin=is_admin)
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=self._access_ttl)

    async def rotate(self, claims: TokenClaims, *, is_admin: bool) -> TokenPair:
        """Swap a decoded refresh token for a new pair; a replayed one revokes its family."""
        new_refresh, new_jti = self._encode(
            subject=claims.subject, family=claims.family, kind="refresh", is_admin=is_admin
        )
        outcome = await self._store.rotate(claims.family, claims.jti, new_jti, self._refresh_ttl)
        if outcome is Rotation.REUSE_DETECTED:
            record_auth("refresh_reuse_detected")
            raise AuthenticationError(
                "This refresh token was already used; every token of its session is now revoked."
            )
        if outcome is Rotation.UNKNOWN_FAMILY:
            record_auth("refresh_failure")
            raise AuthenticationError("The refresh token has been revoked.")
        access, _ = self._encode(
            subject=claims.subject, family=claims.family, kind="access", is_admin=is_admin
        )
        return TokenPair(
            access_token=access, refresh_token=new_refresh, expires_in=self._access_ttl
        )

    async def revoke(self, access: TokenClaims, refresh_token: str | None) -> None:
        await self._store.revoke(
            jti=access.jti, family=access.family, remaining_seconds=access.remaining_seconds()
        )
        if refresh_token:
            other = self.decode(refresh_token, "refresh")
            if other.subject != access.subject:
                raise AuthenticationError("The refresh token belongs to another user.")
            if other.family != access.family:
                await self._store.revoke_family(other.family)

    async def revoke_all_for(self, subject: uuid.UUID) -> None:
        """Tokens issued up to now stop working (password change, deletion, role change)."""
        await self._store.cut_off_user(
            str(subject), not_before=int(time.time()), ttl_seconds=self._refresh_ttl
        )
