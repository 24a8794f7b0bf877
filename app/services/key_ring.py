"""A worker's view of the signing keys: signs with the active key, verifies by `kid` with the
algorithm pinned per key, serves the JWKS, and reloads from the database on a short interval.

Replicas never coordinate: a key's state follows from its stored times and the clock, and a
key may sign only after it has been published longer than the JWKS max-age plus the reload
interval, so every replica and every consumer's cached JWKS already holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt
import orjson
import structlog
from jwt.types import Options

from app.errors import DependencyUnavailableError
from app.infra.background import cancel_and_wait
from app.infra.key_encryption import KeyEncryption, KeyEncryptionError
from app.infra.key_store import KeyStore
from app.models import SigningKey
from app.observability import metrics
from app.services import jwk
from app.services.key_lifecycle import KeyState, KeyTimes, pending, signer
from app.services.signing_keys import SigningKeyManager, times_of
from app.settings import SIGNING_KEY_LOAD_TIMEOUT_SECONDS

log = structlog.get_logger("app.keys")

# Headers a token of ours may carry. Anything else (jwk, jku, x5u, x5c, crit, ...) is an
# attempt to make a verifier trust a key the token brings along: refused outright.
ALLOWED_HEADERS: Final = frozenset({"alg", "typ", "kid"})
# At most one reload per this many seconds when tokens with an unknown kid arrive.
_UNKNOWN_KID_RELOAD_SECONDS: Final = 1.0


def _plain_header(token: str) -> dict[str, Any]:
    """The token's header, unverified; InvalidTokenError when it carries any header but
    alg, typ and kid."""
    header = jwt.get_unverified_header(token)
    if not set(header) <= ALLOWED_HEADERS:
        raise jwt.InvalidTokenError("unexpected token header")
    return header


class UnknownKeyError(jwt.InvalidTokenError):
    """The token names a key that is not (or no longer) published."""


class LegacyTokenRefusedError(jwt.InvalidTokenError):
    """An HMAC token outside the upgrade window."""


@dataclass(frozen=True, slots=True)
class _Entry:
    kid: str
    algorithm: str
    times: KeyTimes
    public: jwk.PublicKey
    public_jwk: dict[str, str]
    row: SigningKey


@dataclass(frozen=True, slots=True)
class LegacyHmac:
    """Pre-upgrade HS256 tokens (no kid, or the HMAC key's kid) stay valid until they expire:
    only those issued before the first asymmetric key was activated, with a lifetime no
    longer than this service hands out. The window closes by itself."""

    secret: str
    max_lifetime_seconds: int


def hmac_kid(secret: str) -> str:
    """A stable, non-reversible id for an HMAC secret (never published)."""
    return "hs256-" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]


class KeyRing:
    def __init__(
        self,
        store: KeyStore,
        encryption: KeyEncryption,
        manager: SigningKeyManager,
        *,
        refresh_seconds: float,
        legacy: LegacyHmac | None,
    ) -> None:
        self._store = store
        self._encryption = encryption
        self._manager = manager
        self._refresh_seconds = refresh_seconds
        self._legacy = legacy
        self._legacy_kid = hmac_kid(legacy.secret) if legacy else None
        self._entries: dict[str, _Entry] = {}
        self._private: dict[str, jwk.PrivateKey] = {}
        self._first_activation: float | None = None
        self._loaded_at: float | None = None
        self._last_attempt = 0.0
        self._jwks_cache: tuple[tuple[str, ...], bytes, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None
        # Bumped whenever a key stops being accepted, so verified-token caches can drop it.
        self.version = 0

    # -- loading ---------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload every key; create the very first one if the database holds none."""
        self._last_attempt = time.monotonic()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can drop a cancel.
        async with asyncio.timeout(SIGNING_KEY_LOAD_TIMEOUT_SECONDS):
            rows = await self._store.load()
        now = time.time()
        if not any(times_of(row).is_published(now) for row in rows):
            created = await self._manager.bootstrap(now)
            if created:
                log.info("signing_key_bootstrapped", kid=created)
            async with asyncio.timeout(SIGNING_KEY_LOAD_TIMEOUT_SECONDS):
                rows = await self._store.load()
        self._install(rows)

    def _install(self, rows: Sequence[SigningKey]) -> None:
        entries: dict[str, _Entry] = {}
        for row in rows:
            public_jwk = orjson.loads(row.public_jwk)
            entries[row.kid] = _Entry(
                kid=row.kid,
                algorithm=row.algorithm,
                times=times_of(row),
                public=jwk.load_public(public_jwk),
                public_jwk=public_jwk,
                row=row,
            )
        if set(self._entries) - set(entries) or any(
            entry.times != entries[kid].times
            for kid, entry in self._entries.items()
            if kid in entries
        ):
            self.version += 1
        self._private = {kid: key for kid, key in self._private.items() if kid in entries}
        self._entries = entries
        activations = [e.times.activated_at for e in entries.values() if e.times.activated_at]
        self._first_activation = min(activations, default=None)
        self._loaded_at = time.time()
        self._observe(self._loaded_at)

    def _observe(self, now: float) -> None:
        times = [entry.times for entry in self._entries.values()]
        current = signer(times, now)
        metrics.SIGNING_KEY_ACTIVE_AGE.set(now - (current.activated_at or now) if current else -1.0)
        metrics.SIGNING_KEY_NEXT_PRESENT.set(1 if pending(times, now) else 0)
        for state in KeyState:
            count = sum(1 for key in times if key.state(now) is state)
            metrics.SIGNING_KEYS.labels(state=state.value).set(count)
        metrics.SIGNING_KEY_RELOAD_TIMESTAMP.set(now)

    async def run(self) -> None:
        """Reload forever; a failed reload keeps the keys already loaded."""
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                metrics.SIGNING_KEY_RELOAD_FAILURES.inc()
                log.warning("signing_keys_reload_failed", error=type(error).__name__)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="key-ring-reload")

    async def stop(self) -> None:
        for task in (self._task, self._reload):
            if task is not None:
                await cancel_and_wait(task)

    def _reload_soon(self) -> None:
        """A token names a kid we do not hold: maybe a key younger than our last reload
        (the first key, created by another replica). Reload, but at most once a second."""
        if time.monotonic() - self._last_attempt < _UNKNOWN_KID_RELOAD_SECONDS:
            return
        if self._reload is not None and not self._reload.done():
            return
        self._last_attempt = time.monotonic()
        with contextlib.suppress(RuntimeError):
            self._reload = asyncio.get_running_loop().create_task(self._safe_refresh())

    async def _safe_refresh(self) -> None:
        try:
            await self.refresh()
        except Exception as error:
            log.warning("signing_keys_reload_failed", error=type(error).__name__)

    # -- signing ---------------------------------------------------------------------------

    def signing_kid(self, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        current = signer([entry.times for entry in self._entries.values()], now)
        return current.kid if current else None

    def sign(self, claims: dict[str, Any]) -> str:
        kid = self.signing_kid()
        if kid is None:
            raise DependencyUnavailableError(
                "No signing key is active yet; retry shortly.", retry_after_seconds=2
            )
        entry = self._entries[kid]
        private = self._private.get(kid)
        if private is None:
            if entry.row.private_key_ciphertext is None:
                raise DependencyUnavailableError("The active signing key has no private key.")
            try:
                plaintext = self._encryption.decrypt(
                    kid, entry.row.kek_id, entry.row.private_key_ciphertext
                )
            except KeyEncryptionError as error:
                log.error("signing_key_undecryptable", kid=kid, reason=str(error))
                raise DependencyUnavailableError(
                    "The active signing key cannot be decrypted with the configured KEK."
                ) from error
            private = self._private[kid] = jwk.load_private(plaintext)
        return jwt.encode(
            claims, private, algorithm=entry.algorithm, headers={"kid": kid, "typ": "JWT"}
        )

    # -- verifying -------------------------------------------------------------------------

    def verify(
        self, token: str, *, audience: str, issuer: str, required: list[str], leeway: int
    ) -> dict[str, Any]:
        """Claims of a token signed by a published key of ours; jwt errors otherwise."""
        header = _plain_header(token)
        kid = header.get("kid")
        options: Options = {"require": required}
        if kid is None or kid == self._legacy_kid:
            return self._verify_legacy(token, audience, issuer, options, leeway)
        entry = self._entries.get(kid) if isinstance(kid, str) else None
        if entry is None or not entry.times.is_published(time.time()):
            metrics.TOKENS_UNKNOWN_KID.inc()
            if entry is None:
                self._reload_soon()
            raise UnknownKeyError("unknown signing key")
        if header.get("alg") != entry.algorithm:
            raise jwt.InvalidAlgorithmError("algorithm does not match the key")
        return jwt.decode(
            token,
            entry.public,
            algorithms=[entry.algorithm],
            audience=audience,
            issuer=issuer,
            options=options,
            leeway=leeway,
        )

    def _verify_legacy(
        self, token: str, audience: str, issuer: str, options: Options, leeway: int
    ) -> dict[str, Any]:
        if self._legacy is None:
            metrics.TOKENS_UNKNOWN_KID.inc()
            raise UnknownKeyError("token without a key id")
        claims = jwt.decode(
            token,
            self._legacy.secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=issuer,
            options=options,
            leeway=leeway,
        )
        issued, expires = int(claims["iat"]), int(claims["exp"])
        if self._first_activation is not None and issued >= int(self._first_activation):
            raise LegacyTokenRefusedError("HMAC tokens are no longer issued")
        if expires - issued > self._legacy.max_lifetime_seconds:
            raise LegacyTokenRefusedError("token lifetime longer than ever issued")
        return claims

    # -- publishing ------------------------------------------------------------------------

    def jwks(self, now: float | None = None) -> tuple[bytes, str] | None:
        """The JWK Set body and its ETag; None until a key is loaded (an empty set must
        never be cached by a consumer)."""
        now = time.time() if now is None else now
        published = sorted(
            (entry for entry in self._entries.values() if entry.times.is_published(now)),
            key=lambda entry: entry.times.published_at,
        )
        if not published:
            return None
        kids = tuple(entry.kid for entry in published)
        if self._jwks_cache is None or self._jwks_cache[0] != kids:
            keys = [
                {**entry.public_jwk, "kid": entry.kid, "alg": entry.algorithm, "use": "sig"}
                for entry in published
            ]
            body = orjson.dumps({"keys": keys})
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self._jwks_cache = (kids, body, etag)
        return self._jwks_cache[1], self._jwks_cache[2]

    @property
    def algorithms(self) -> list[str]:
        return sorted({entry.algorithm for entry in self._entries.values()} | {"EdDSA", "ES256"})


class HmacSigner:
    """The explicit single-service opt-in (JWT_ALGORITHM=HS256): one shared secret, never
    published, so no other service can verify (or forge) tokens without holding it."""

    version = 0

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._kid = hmac_kid(secret)

    @property
    def algorithms(self) -> list[str]:
        return ["HS256"]

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self._secret, algorithm="HS256", headers={"kid": self._kid, "typ": "JWT"}
        )

    def verify(
        self, token: str, *, audience: str, issuer: str, required: list[str], leeway: int
    ) -> dict[str, Any]:
        header = _plain_header(token)
        kid = header.get("kid")
        if kid is not None and not hmac.compare_digest(str(kid), self._kid):
            metrics.TOKENS_UNKNOWN_KID.inc()
            raise UnknownKeyError("unknown signing key")
        return jwt.decode(
            token,
            self._secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=issuer,
            options={"require": required},
            leeway=leeway,
        )

    def jwks(self, now: float | None = None) -> tuple[bytes, str] | None:
        body = b'{"keys":[]}'
        return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    async def refresh(self) -> None:
        return None

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def signing_kid(self, now: float | None = None) -> str | None:
        return self._kid
