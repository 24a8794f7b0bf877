"""The settings of the high-availability modes refuse what cannot work, naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


def _settings(**values: str) -> Settings:
    return Settings(**{"APP_ENV": "test", **values})  # type: ignore[arg-type]


def test_sentinels_are_host_port_pairs() -> None:
    settings = _settings(REDIS_SENTINELS="10.0.0.1:26379, sentinel-b:26380")
    assert settings.redis_sentinel_addresses == [("10.0.0.1", 26379), ("sentinel-b", 26380)]
    for bad in ("sentinel-a", "sentinel-a:port", ":26379", "a:70000"):
        with pytest.raises(ValidationError, match="REDIS_SENTINELS"):
            _settings(REDIS_SENTINELS=bad)


def test_redis_url_and_sentinels_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="either REDIS_URL or REDIS_SENTINELS"):
        _settings(REDIS_URL="redis://127.0.0.1:6379/0", REDIS_SENTINELS="127.0.0.1:26379")


def test_production_accepts_sentinels_instead_of_a_url() -> None:
    settings = Settings(
        APP_ENV="production",
        DATABASE_URL="postgresql+asyncpg://u:p@/app?host=db-1:5432&host=db-2:5432"
        "&target_session_attrs=read-write",
        REDIS_SENTINELS="sentinel:26379",
        JWT_SECRET_KEY="x" * 40,
        SIGNING_KEY_ENCRYPTION_KEY="y" * 40,
    )
    assert settings.redis_sentinels == ["sentinel:26379"]
    with pytest.raises(ValidationError, match="REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES"):
        Settings(
            APP_ENV="production",
            DATABASE_URL="postgresql+asyncpg://u:p@db:5432/app",
            JWT_SECRET_KEY="x" * 40,
            SIGNING_KEY_ENCRYPTION_KEY="y" * 40,
        )


def test_cluster_needs_a_hash_tagged_prefix_and_excludes_the_other_modes() -> None:
    settings = _settings(REDIS_CLUSTER_NODES="node-a:6379,node-b:6379", CACHE_KEY_PREFIX="{us:v1}")
    assert settings.redis_cluster_addresses == [("node-a", 6379), ("node-b", 6379)]
    with pytest.raises(ValidationError, match=r"CACHE_KEY_PREFIX: .* hash tag, for example"):
        _settings(REDIS_CLUSTER_NODES="node-a:6379")
    with pytest.raises(ValidationError, match="REDIS_CLUSTER_NODES: 'node-a' is not host:port"):
        _settings(REDIS_CLUSTER_NODES="node-a", CACHE_KEY_PREFIX="{us:v1}")
    with pytest.raises(ValidationError, match="set one of REDIS_URL, REDIS_SENTINELS"):
        _settings(
            REDIS_CLUSTER_NODES="node-a:6379",
            REDIS_URL="redis://127.0.0.1:6379/0",
            CACHE_KEY_PREFIX="{us:v1}",
        )
