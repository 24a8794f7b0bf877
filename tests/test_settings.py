"""Settings: production refuses unsafe values; a bad value fails at start naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import DEVELOPMENT_JWT_KEY, DEVELOPMENT_KEK, Rate, Settings, parse_rate
from tests.support.refusals import refusal

REPO = Path(__file__).resolve().parents[1]
PG = "postgresql+asyncpg://u@db/x"


def test_production_refuses_missing_or_default_secret() -> None:
    hs256 = {"JWT_ALGORITHM": "HS256"}
    with pytest.raises(ValidationError, match="JWT_SECRET_KEY"):
        Settings(APP_ENV="production", DATABASE_URL=PG, REDIS_URL="redis://r:6379/0", **hs256)
    with pytest.raises(ValidationError, match="JWT_SECRET_KEY"):
        Settings(
            APP_ENV="production",
            DATABASE_URL=PG,
            REDIS_URL="redis://r:6379/0",
            JWT_SECRET_KEY=DEVELOPMENT_JWT_KEY,
            **hs256,
        )
    with pytest.raises(ValidationError, match="REDIS_URL"):
        Settings(APP_ENV="production", DATABASE_URL=PG, JWT_SECRET_KEY="k" * 40, **hs256)


def test_production_with_signing_keys_needs_a_real_key_encryption_key() -> None:
    real = {"APP_ENV": "production", "DATABASE_URL": PG, "REDIS_URL": "redis://r:6379/0"}
    with pytest.raises(ValidationError, match="SIGNING_KEY_ENCRYPTION_KEY"):
        Settings(**real, JWT_SECRET_KEY="k" * 40)
    with pytest.raises(ValidationError, match="SIGNING_KEY_ENCRYPTION_KEY"):
        Settings(**real, SIGNING_KEY_ENCRYPTION_KEY=DEVELOPMENT_KEK)
    settings = Settings(**real, SIGNING_KEY_ENCRYPTION_KEY="e" * 44)
    assert settings.jwt_algorithm == "EdDSA" and settings.signing_kek == "e" * 44


def test_key_timing_that_a_cached_jwks_could_miss_is_refused() -> None:
    with pytest.raises(ValidationError, match="SIGNING_KEY_REFRESH_SECONDS"):
        Settings(JWKS_MAX_AGE_SECONDS=5, SIGNING_KEY_REFRESH_SECONDS=10)
    with pytest.raises(ValidationError, match="SIGNING_KEY_OVERLAP_SECONDS"):
        Settings(
            JWKS_MAX_AGE_SECONDS=300,
            ACCESS_TOKEN_TTL_SECONDS=900,
            REFRESH_TOKEN_TTL_SECONDS=3600,
            SIGNING_KEY_OVERLAP_SECONDS=3899,
        )
    settings = Settings(JWKS_MAX_AGE_SECONDS=300, REFRESH_TOKEN_TTL_SECONDS=3600)
    assert settings.key_overlap_seconds == 3900
    assert settings.key_publish_delay_seconds == 315


def test_production_accepts_real_values_and_secret_files(tmp_path: Path) -> None:
    key = tmp_path / "jwt"
    key.write_text("s" * 48 + "\n")
    settings = Settings(
        APP_ENV="production",
        DATABASE_URL=PG,
        REDIS_URL="redis://r:6379/0",
        JWT_ALGORITHM="HS256",
        JWT_SECRET_KEY_FILE=str(key),
    )
    assert settings.jwt_key == "s" * 48


def test_development_falls_back_to_embedded_and_a_dev_key() -> None:
    settings = Settings(APP_ENV="development")
    assert settings.database_dsn == ""
    assert settings.jwt_key == DEVELOPMENT_JWT_KEY


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"DB_POOL_SIZE": "lots"}, "DB_POOL_SIZE"),
        ({"RATE_LIMIT_LOGIN": "ten per minute"}, "RATE_LIMIT_LOGIN"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
    ],
)
def test_bad_value_fails_at_start_naming_the_field(env: dict[str, str], field: str) -> None:
    assert field in refusal("app", "check-config", env={"APP_ENV": "test", **env})


def test_rates_are_settings_values() -> None:
    settings = Settings(APP_ENV="test", RATE_LIMIT_LOGIN="7/hour")
    assert settings.rate_limit_login == Rate(limit=7, period_seconds=3600)
    assert settings.rate_limit_api == Rate(limit=1200, period_seconds=60)


def test_settings_import_nothing_of_the_service() -> None:
    """Settings sit below every layer: importing them loads no infra, api or services."""
    code = (
        "import sys, app.settings; "
        "print(sorted(m for m in sys.modules if m.startswith('app.') and m != 'app.settings'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_rate_parsing() -> None:
    assert parse_rate("10/minute").limit == 10
    assert parse_rate("5 / seconds").period_seconds == 1
    with pytest.raises(ValueError, match="rate must look like"):
        parse_rate("0/minute")


def test_defaults_are_the_documented_ones() -> None:
    """What a test sees when it sets nothing: the README's defaults."""
    settings = Settings()
    assert settings.db_pool_size == 5 and settings.db_max_overflow == 5
    assert settings.cache_enabled is True
    assert settings.database_dsn == "" and settings.redis_dsn == ""
    assert not any(name.startswith("OTEL_") for name in os.environ)


def test_the_callers_environment_does_not_reach_the_tests() -> None:
    """A developer's shell (a pool size, a disabled cache, an OTLP endpoint, a DATABASE_URL)
    must not change what the tests see: the run above, started with all of them, still sees
    the documented defaults."""
    leaky = {
        "DB_POOL_SIZE": "99",
        "CACHE_ENABLED": "false",
        "DATABASE_URL": "postgresql+asyncpg://someone@elsewhere/production",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
    }
    probe = "tests/test_settings.py::test_defaults_are_the_documented_ones"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", probe],
        cwd=REPO,
        env={**os.environ, **leaky},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
