"""Builds the key manager and the token signer from the settings (used by the app and CLI)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.infra.key_encryption import KeyEncryption
from app.infra.key_store import KeyStore
from app.services.jwk import AsymmetricAlgorithm
from app.services.key_lifecycle import Policy
from app.services.key_ring import HmacSigner, KeyRing, LegacyHmac
from app.services.signing_keys import SigningKeyManager
from app.settings import Settings

TokenSigner = KeyRing | HmacSigner


def key_manager(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> SigningKeyManager:
    algorithm: AsymmetricAlgorithm = "ES256" if settings.jwt_algorithm == "ES256" else "EdDSA"
    policy = Policy(
        publish_delay_seconds=settings.key_publish_delay_seconds,
        overlap_seconds=settings.key_overlap_seconds,
    )
    return SigningKeyManager(
        KeyStore(sessions), KeyEncryption(settings.signing_kek), policy, algorithm
    )


def token_signer(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> TokenSigner:
    if settings.jwt_algorithm == "HS256":
        return HmacSigner(settings.jwt_key)
    # Tokens of an HS256 deployment keep working after the upgrade until they expire, as
    # long as the old secret is still configured.
    explicit_secret = settings._secret(settings.jwt_secret_key, settings.jwt_secret_key_file)
    legacy = (
        LegacyHmac(explicit_secret or settings.jwt_key, settings.longest_token_lifetime_seconds)
        if settings.jwt_legacy_hs256 and (explicit_secret or not settings.is_production)
        else None
    )
    return KeyRing(
        KeyStore(sessions),
        KeyEncryption(settings.signing_kek),
        key_manager(settings, sessions),
        refresh_seconds=settings.signing_key_refresh_seconds,
        legacy=legacy,
    )
