"""Token introspection (RFC 7662) for listed service clients: whether an access token is
live right now, decided by its signature and the session state, never by a cache of answers."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from app.errors import AuthenticationError
from app.infra.request_gate import RequestGate
from app.services.tokens import TokenService

INACTIVE: dict[str, Any] = {"active": False}


class ServiceClients:
    """Client ids and secrets from INTROSPECTION_CLIENTS ("id:secret,id:secret"). Only digests
    are kept; comparisons take the same time whether the id or the secret is wrong."""

    def __init__(self, text: str) -> None:
        self._digests: dict[str, bytes] = {}
        for entry in text.replace("\n", ",").split(","):
            client_id, _, secret = entry.strip().partition(":")
            if client_id and secret:
                self._digests[client_id] = hashlib.sha256(secret.encode()).digest()
        # Compared against when the id is unknown, so both failures cost the same.
        self._decoy = hashlib.sha256(b"unknown-client").digest()

    def __len__(self) -> int:
        return len(self._digests)

    def authenticate(self, client_id: str, secret: str) -> bool:
        expected = self._digests.get(client_id, self._decoy)
        presented = hashlib.sha256(secret.encode()).digest()
        return hmac.compare_digest(expected, presented) and client_id in self._digests


@dataclass(frozen=True, slots=True)
class IntrospectionService:
    tokens: TokenService
    gate: RequestGate
    clients: ServiceClients
    issuer: str
    audience: str

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 response. Only access tokens are introspectable: a refresh token is for
        the client that holds it, never for a resource server, so it reads as inactive."""
        try:
            claims = self.tokens.decode(token, "access")
            # The same session-state check every API request passes (revocation, logout,
            # password change), without a rate-limit count for the token's owner.
            await self.gate.admit(claims, None)
        except AuthenticationError:
            return INACTIVE
        return {
            "active": True,
            "sub": claims.subject_text,
            "exp": claims.expires_at,
            "iat": claims.issued_at,
            "jti": claims.jti,
            "sid": str(claims.session_id),
            "iss": self.issuer,
            "aud": self.audience,
            "token_type": "Bearer",
            "admin": claims.is_admin,
        }
