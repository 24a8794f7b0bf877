"""Every knob of the service, read once from the environment; env var names are the contract."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Final, Literal, Self

from pydantic import (
    AnyUrl,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A key that only development and tests may run with; production refuses it.
DEVELOPMENT_JWT_KEY = "development-only-insecure-key-change-me-0123456789"
# Likewise for the key-encryption key of the signing keys.
DEVELOPMENT_KEK = "development-only-key-encryption-key-change-me-0123"
# Longest a worker's reload of the signing keys may take before it is abandoned: a key is
# therefore in every worker's JWKS at most one refresh interval plus this after it committed.
SIGNING_KEY_LOAD_TIMEOUT_SECONDS: Final = 5.0


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


_PERIODS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit: at most `limit` requests per `period_seconds` window."""

    limit: int
    period_seconds: int


def parse_rate(text: str) -> Rate:
    """Parse "<count>/<second|minute|hour|day>", e.g. "10/minute"."""
    match = _RATE.match(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"rate must look like '10/minute' (count >= 1), got {text!r}")
    return Rate(limit=int(match.group(1)), period_seconds=_PERIODS[match.group(2)])


def _rate(value: object) -> object:
    return parse_rate(value) if isinstance(value, str) else value


# NoDecode: the env var is "10/minute", not JSON.
RateSetting = Annotated[Rate, NoDecode, BeforeValidator(_rate)]


# Redis Cluster hashes only the part of a key between the first "{" and the next "}".
_HASH_TAG = re.compile(r"\{[^{}]+\}")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Configuration from plain environment variables (see README, "Configuration")."""

    model_config = SettingsConfigDict(
        env_file=None, case_sensitive=False, extra="ignore", frozen=True
    )

    app_env: Environment = Field(default=Environment.DEVELOPMENT, alias="APP_ENV")
    service_name: str = Field(default="user-service", alias="OTEL_SERVICE_NAME")
    service_version: str = Field(default="", alias="SERVICE_VERSION")
    git_commit: str = Field(default="unknown", alias="GIT_COMMIT")

    # Database. No DATABASE_URL in development means the embedded SQLite fallback.
    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    database_url_file: Path | None = Field(default=None, alias="DATABASE_URL_FILE")
    db_pool_size: int = Field(default=5, ge=1, le=200, alias="DB_POOL_SIZE")
    db_max_overflow: int = Field(default=5, ge=0, le=200, alias="DB_MAX_OVERFLOW")
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=120, alias="DB_POOL_TIMEOUT")
    db_pool_recycle_seconds: int = Field(default=1800, ge=-1, alias="DB_POOL_RECYCLE")
    db_pool_pre_ping: bool = Field(default=True, alias="DB_POOL_PRE_PING")
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120, alias="DB_CONNECT_TIMEOUT")
    db_statement_timeout_ms: int = Field(default=5000, ge=0, alias="DB_STATEMENT_TIMEOUT_MS")
    db_application_name: str = Field(default="user-service", alias="DB_APPLICATION_NAME")
    db_pgbouncer_transaction_mode: bool = Field(default=False, alias="DB_PGBOUNCER")
    db_slow_query_ms: int = Field(default=200, ge=0, alias="DB_SLOW_QUERY_MS")
    db_echo: bool = Field(default=False, alias="DB_ECHO")

    # Redis: cache, rate limits and token revocation.
    redis_url: SecretStr | None = Field(default=None, alias="REDIS_URL")
    redis_url_file: Path | None = Field(default=None, alias="REDIS_URL_FILE")
    redis_max_connections: int = Field(default=64, ge=1, le=10000, alias="REDIS_MAX_CONNECTIONS")
    redis_socket_timeout_seconds: float = Field(
        default=1.0, gt=0, le=30, alias="REDIS_SOCKET_TIMEOUT"
    )
    redis_connect_timeout_seconds: float = Field(
        default=1.0, gt=0, le=30, alias="REDIS_CONNECT_TIMEOUT"
    )
    redis_breaker_failures: int = Field(default=3, ge=1, alias="REDIS_BREAKER_FAILURES")
    redis_breaker_cooldown_seconds: float = Field(
        default=5.0, gt=0, le=600, alias="REDIS_BREAKER_COOLDOWN"
    )
    # Redis Sentinel instead of REDIS_URL: "host:port,host:port", the master set's name, and
    # the passwords of the sentinels and of the Redis servers they point at.
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default=[], alias="REDIS_SENTINELS")
    redis_sentinel_master: str = Field(
        default="mymaster", min_length=1, alias="REDIS_SENTINEL_MASTER"
    )
    redis_sentinel_password: SecretStr | None = Field(default=None, alias="REDIS_SENTINEL_PASSWORD")
    redis_sentinel_password_file: Path | None = Field(
        default=None, alias="REDIS_SENTINEL_PASSWORD_FILE"
    )
    # Redis Cluster instead: "host:port,..." seed nodes (any few; the rest are discovered).
    redis_cluster_nodes: Annotated[list[str], NoDecode] = Field(
        default=[], alias="REDIS_CLUSTER_NODES"
    )
    redis_password: SecretStr | None = Field(default=None, alias="REDIS_PASSWORD")
    redis_password_file: Path | None = Field(default=None, alias="REDIS_PASSWORD_FILE")

    cache_enabled: bool = Field(default=True, alias="CACHE_ENABLED")
    cache_ttl_seconds: int = Field(default=300, ge=1, alias="CACHE_TTL_SECONDS")
    cache_ttl_jitter: float = Field(default=0.1, ge=0, le=0.5, alias="CACHE_TTL_JITTER")
    cache_negative_ttl_seconds: int = Field(default=15, ge=0, alias="CACHE_NEGATIVE_TTL_SECONDS")
    cache_key_prefix: str = Field(default="us:v1", min_length=1, alias="CACHE_KEY_PREFIX")
    # Longer than the slowest load (statement and pool timeouts): a load that outlives its
    # lock does not store its value. Other workers wait for it at most ~75 ms regardless.
    cache_lock_ttl_ms: int = Field(default=10000, ge=10, alias="CACHE_LOCK_TTL_MS")

    # Tokens.
    jwt_secret_key: SecretStr | None = Field(default=None, alias="JWT_SECRET_KEY")
    jwt_secret_key_file: Path | None = Field(default=None, alias="JWT_SECRET_KEY_FILE")
    # EdDSA (Ed25519) or ES256 sign with keys from the database; HS256 is the explicit
    # single-service opt-in with JWT_SECRET_KEY (nobody else can verify its tokens).
    jwt_algorithm: Literal["EdDSA", "ES256", "HS256"] = Field(
        default="EdDSA", alias="JWT_ALGORITHM"
    )
    jwt_issuer: str = Field(default="user-service", alias="JWT_ISSUER")
    jwt_audience: str = Field(default="user-service", alias="JWT_AUDIENCE")
    access_token_ttl_seconds: int = Field(default=900, ge=30, alias="ACCESS_TOKEN_TTL_SECONDS")
    refresh_token_ttl_seconds: int = Field(
        default=14 * 24 * 3600, ge=60, alias="REFRESH_TOKEN_TTL_SECONDS"
    )

    # Signing keys, JWKS and introspection (README, "Signing keys and rotation").
    signing_key_encryption_key: SecretStr | None = Field(
        default=None, alias="SIGNING_KEY_ENCRYPTION_KEY"
    )
    signing_key_encryption_key_file: Path | None = Field(
        default=None, alias="SIGNING_KEY_ENCRYPTION_KEY_FILE"
    )
    jwks_max_age_seconds: int = Field(default=300, ge=1, le=86400, alias="JWKS_MAX_AGE_SECONDS")
    signing_key_refresh_seconds: float = Field(
        default=10.0, gt=0, le=3600, alias="SIGNING_KEY_REFRESH_SECONDS"
    )
    signing_key_overlap_seconds: int | None = Field(
        default=None, ge=1, alias="SIGNING_KEY_OVERLAP_SECONDS"
    )
    signing_key_rotation_period_seconds: int = Field(
        default=0, ge=0, alias="SIGNING_KEY_ROTATION_PERIOD_SECONDS"
    )
    jwt_legacy_hs256: bool = Field(default=True, alias="JWT_LEGACY_HS256")
    public_base_url: str | None = Field(default=None, alias="PUBLIC_BASE_URL")
    introspection_clients: SecretStr | None = Field(default=None, alias="INTROSPECTION_CLIENTS")
    introspection_clients_file: Path | None = Field(
        default=None, alias="INTROSPECTION_CLIENTS_FILE"
    )
    rate_limit_introspection: RateSetting = Field(
        default=Rate(6000, 60), alias="RATE_LIMIT_INTROSPECTION"
    )

    # Sessions: PostgreSQL is the truth, Redis caches their state under a short lease.
    refresh_reuse_grace_seconds: float = Field(
        default=5.0, ge=0, le=60, alias="REFRESH_REUSE_GRACE_SECONDS"
    )
    session_cache_lease_seconds: float = Field(
        default=2.0, ge=0.5, le=30, alias="SESSION_CACHE_LEASE_SECONDS"
    )
    # Per-account login throttling (on top of RATE_LIMIT_LOGIN per address).
    login_throttle_enabled: bool = Field(default=True, alias="LOGIN_THROTTLE_ENABLED")
    login_throttle_free_failures: int = Field(
        default=5, ge=1, le=1000, alias="LOGIN_THROTTLE_FREE_FAILURES"
    )
    login_throttle_base_delay_seconds: float = Field(
        default=1.0, gt=0, le=3600, alias="LOGIN_THROTTLE_BASE_DELAY_SECONDS"
    )
    login_throttle_max_delay_seconds: float = Field(
        default=300.0, gt=0, le=86400, alias="LOGIN_THROTTLE_MAX_DELAY_SECONDS"
    )
    login_throttle_forget_seconds: int = Field(
        default=3600, ge=1, alias="LOGIN_THROTTLE_FORGET_SECONDS"
    )

    # Password hashing (Argon2id). Defaults follow RFC 9106's second recommended option.
    argon2_time_cost: int = Field(default=3, ge=1, le=20, alias="ARGON2_TIME_COST")
    argon2_memory_kib: int = Field(default=65536, ge=8, alias="ARGON2_MEMORY_KIB")
    argon2_parallelism: int = Field(default=1, ge=1, le=16, alias="ARGON2_PARALLELISM")
    password_hash_concurrency: int = Field(
        default=2, ge=1, le=64, alias="PASSWORD_HASH_CONCURRENCY"
    )

    # Rate limits, "<count>/<second|minute|hour>".
    rate_limit_enabled: bool = Field(default=True, alias="RATE_LIMIT_ENABLED")
    rate_limit_login: RateSetting = Field(default=Rate(10, 60), alias="RATE_LIMIT_LOGIN")
    rate_limit_api: RateSetting = Field(default=Rate(1200, 60), alias="RATE_LIMIT_API")
    rate_limit_fail_open: bool = Field(default=True, alias="RATE_LIMIT_FAIL_OPEN")

    # HTTP.
    cors_origins: Annotated[list[str], NoDecode] = Field(default=[], alias="CORS_ORIGINS")
    trusted_hosts: Annotated[list[str], NoDecode] = Field(default=["*"], alias="TRUSTED_HOSTS")
    max_body_bytes: int = Field(default=65536, ge=1024, alias="MAX_BODY_BYTES")
    # Proxies (addresses or CIDRs, "*" for any) whose X-Forwarded-For gunicorn believes; the
    # client address that rate limits key on comes from it. gunicorn.conf.py reads it here.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1"], alias="FORWARDED_ALLOW_IPS"
    )
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, le=30, alias="READINESS_TIMEOUT")
    shutdown_drain_seconds: float = Field(default=0.0, ge=0, le=300, alias="SHUTDOWN_DRAIN_SECONDS")
    # Unset: docs everywhere but production (see the docs_enabled property).
    docs_enabled_override: bool | None = Field(default=None, alias="DOCS_ENABLED")

    # Observability.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", alias="LOG_LEVEL"
    )
    log_format: Literal["auto", "json", "console"] = Field(default="auto", alias="LOG_FORMAT")
    metrics_enabled: bool = Field(default=True, alias="METRICS_ENABLED")
    # /metrics is served here, on the BIND address, and never on the public port.
    metrics_port: int = Field(default=9464, ge=1, le=65535, alias="METRICS_PORT")

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "*":
                # Strict, as gunicorn is: 10.0.0.1/8 is a typo for 10.0.0.0/8 or 10.0.0.1.
                ipaddress.ip_network(entry)
        return value

    @field_validator(
        "cors_origins",
        "trusted_hosts",
        "forwarded_allow_ips",
        "redis_sentinels",
        "redis_cluster_nodes",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("redis_sentinels", "redis_cluster_nodes")
    @classmethod
    def _host_ports(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                name = (
                    "REDIS_SENTINELS"
                    if info.field_name == "redis_sentinels"
                    else ("REDIS_CLUSTER_NODES")
                )
                raise ValueError(f"{name}: {entry!r} is not host:port")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _production_needs_real_dependencies(self) -> Self:
        if self.app_env is Environment.PRODUCTION:
            secret = (
                ("JWT_SECRET_KEY", self.jwt_key)
                if self.jwt_algorithm == "HS256"
                else ("SIGNING_KEY_ENCRYPTION_KEY", self.signing_kek)
            )
            missing = [
                name
                for name, value in (
                    secret,
                    ("DATABASE_URL", self.database_dsn),
                    (
                        "REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES",
                        self.redis_dsn or self.redis_sentinels or self.redis_cluster_nodes,
                    ),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"production requires {', '.join(missing)} to be set")
            if self.jwt_algorithm == "HS256" and (
                self.jwt_key == DEVELOPMENT_JWT_KEY or len(self.jwt_key) < 32
            ):
                raise ValueError(
                    "JWT_SECRET_KEY: production refuses the development key or a key shorter "
                    "than 32 characters"
                )
            if self.jwt_algorithm != "HS256" and (
                self.signing_kek == DEVELOPMENT_KEK or len(self.signing_kek) < 32
            ):
                raise ValueError(
                    "SIGNING_KEY_ENCRYPTION_KEY: production refuses the development key or a "
                    "key shorter than 32 characters"
                )
            if self.database_dsn.startswith("sqlite"):
                raise ValueError("DATABASE_URL: production requires PostgreSQL, not SQLite")
        self._check_key_timing()
        dsn = self.database_dsn
        if dsn and not dsn.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError(
                "DATABASE_URL: must start with postgresql+asyncpg:// or sqlite+aiosqlite://"
            )
        if self.redis_dsn and self.redis_sentinels:
            raise ValueError("REDIS_SENTINELS: set either REDIS_URL or REDIS_SENTINELS, not both")
        if self.redis_cluster_nodes and (self.redis_dsn or self.redis_sentinels):
            raise ValueError(
                "REDIS_CLUSTER_NODES: set one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES"
            )
        if self.redis_cluster_nodes and not _HASH_TAG.search(self.cache_key_prefix):
            # Every script and pipeline of the service must stay in one hash slot.
            raise ValueError(
                "CACHE_KEY_PREFIX: with REDIS_CLUSTER_NODES it must carry a hash tag, for "
                f"example {{{self.cache_key_prefix}}}"
            )
        if self.redis_dsn:
            AnyUrl(self.redis_dsn)
            if not self.redis_dsn.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("REDIS_URL: must start with redis://, rediss:// or unix://")
        return self

    def _check_key_timing(self) -> None:
        if self.signing_key_refresh_seconds > self.jwks_max_age_seconds:
            raise ValueError(
                "SIGNING_KEY_REFRESH_SECONDS: must not exceed JWKS_MAX_AGE_SECONDS "
                f"({self.jwks_max_age_seconds})"
            )
        if (
            self.signing_key_overlap_seconds is not None
            and self.signing_key_overlap_seconds < self.minimum_overlap_seconds
        ):
            raise ValueError(
                f"SIGNING_KEY_OVERLAP_SECONDS: {self.signing_key_overlap_seconds} is shorter than "
                f"JWKS_MAX_AGE_SECONDS + the longest token lifetime = "
                f"{self.minimum_overlap_seconds}"
            )

    @staticmethod
    def _secret(value: SecretStr | None, file: Path | None) -> str:
        """A secret comes from its env var or from a mounted file named by `<VAR>_FILE`."""
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        if file is not None:
            return file.read_text(encoding="utf-8").strip()
        return ""

    @cached_property
    def database_dsn(self) -> str:
        return self._secret(self.database_url, self.database_url_file)

    @cached_property
    def redis_dsn(self) -> str:
        return self._secret(self.redis_url, self.redis_url_file)

    @property
    def redis_sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(h, int(p)) for h, _, p in (e.rpartition(":") for e in self.redis_sentinels)]

    @property
    def redis_cluster_addresses(self) -> list[tuple[str, int]]:
        return [(h, int(p)) for h, _, p in (e.rpartition(":") for e in self.redis_cluster_nodes)]

    @cached_property
    def redis_password_value(self) -> str:
        return self._secret(self.redis_password, self.redis_password_file)

    @cached_property
    def redis_sentinel_password_value(self) -> str:
        return self._secret(self.redis_sentinel_password, self.redis_sentinel_password_file)

    @cached_property
    def jwt_key(self) -> str:
        key = self._secret(self.jwt_secret_key, self.jwt_secret_key_file)
        if not key and self.app_env is not Environment.PRODUCTION:
            return DEVELOPMENT_JWT_KEY
        return key

    @cached_property
    def introspection_clients_text(self) -> str:
        return self._secret(self.introspection_clients, self.introspection_clients_file)

    @cached_property
    def signing_kek(self) -> str:
        kek = self._secret(self.signing_key_encryption_key, self.signing_key_encryption_key_file)
        if not kek and self.app_env is not Environment.PRODUCTION:
            return DEVELOPMENT_KEK
        return kek

    @property
    def longest_token_lifetime_seconds(self) -> int:
        """Refresh tokens are signed by the same keys, so they set the bound."""
        return max(self.access_token_ttl_seconds, self.refresh_token_ttl_seconds)

    @property
    def minimum_overlap_seconds(self) -> int:
        return self.jwks_max_age_seconds + self.longest_token_lifetime_seconds

    @property
    def key_overlap_seconds(self) -> int:
        return self.signing_key_overlap_seconds or self.minimum_overlap_seconds

    @property
    def key_publish_delay_seconds(self) -> float:
        """A key signs only after every replica and every consumer cache can hold it: every
        worker's reload (an interval plus a time-limited load) and then a JWKS max-age."""
        return (
            self.jwks_max_age_seconds
            + self.signing_key_refresh_seconds
            + SIGNING_KEY_LOAD_TIMEOUT_SECONDS
        )

    @property
    def docs_enabled(self) -> bool:
        """/docs and /openapi.json: on by default, except in production, where a map of the
        API is not handed to every caller unless DOCS_ENABLED asks for it."""
        if self.docs_enabled_override is not None:
            return self.docs_enabled_override
        return not self.is_production

    @property
    def is_production(self) -> bool:
        return self.app_env is Environment.PRODUCTION

    @property
    def db_command_timeout_seconds(self) -> float:
        """Client-side deadline per statement: a second past the server's statement_timeout,
        or 30 s when that is off."""
        if self.db_statement_timeout_ms:
            return self.db_statement_timeout_ms / 1000 + 1
        return 30.0

    @property
    def db_max_connections(self) -> int:
        return self.db_pool_size + self.db_max_overflow
