"""The real service (gunicorn, PostgreSQL, Redis DB 6) for hostile-input and security checks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from tests.faults import report
from tests.support.database import async_url, drop_database, fresh_database
from tests.support.isolation import redis_url
from tests.support.service import RunningService, running_service

REDIS_URL = os.environ.get("SECURITY_REDIS_URL") or redis_url(6)
JWT_KEY = "security-test-jwt-key-d41d8cd98f00b204e9800998ecf8427e"
PASSWORD = "sec-password-0123"
ALLOWED_ORIGIN = "https://app.example.com"


@pytest.fixture
def attack_report() -> Callable[..., None]:
    return report.record


def clear_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def security_env(database: str, prefix: str, **overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": async_url(database),
        "REDIS_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": prefix,
        "JWT_SECRET_KEY": JWT_KEY,
        "DB_POOL_SIZE": "3",
        "DB_MAX_OVERFLOW": "2",
        "RATE_LIMIT_LOGIN": "100000/minute",
        "RATE_LIMIT_API": "1000000/minute",
        # Every replayed refresh token is an attack here: no two-tabs grace window.
        "REFRESH_REUSE_GRACE_SECONDS": "0",
        "CORS_ORIGINS": ALLOWED_ORIGIN,
        "TRUSTED_HOSTS": "127.0.0.1,localhost",
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


@dataclass
class Api:
    """A running service and a client for it, with helpers to make users and tokens."""

    service: RunningService
    client: httpx.Client
    database: str

    @property
    def base_url(self) -> str:
        return self.service.base_url

    def sign_up(self, email: str | None = None, **extra: Any) -> dict[str, Any]:
        email = email or f"u-{uuid.uuid4().hex[:12]}@security.example.com"
        response = self.client.post(
            "/api/v1/users", json={"email": email, "password": PASSWORD, **extra}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def user_with_token(self, **extra: Any) -> tuple[dict[str, Any], dict[str, str]]:
        user = self.sign_up(**extra)
        tokens = self.login(user["email"])
        return user, {"Authorization": f"Bearer {tokens['access_token']}"}


def _start(name: str, **overrides: str) -> Iterator[Api]:
    """A service on its own database (user_service_sec_<name>) and Redis key prefix."""
    database = f"user_service_sec_{name}"
    prefix = f"sec-{name}"
    fresh_database(database)
    clear_prefix(prefix)
    try:
        with (
            running_service(security_env(database, prefix, **overrides)) as service,
            httpx.Client(base_url=service.base_url, timeout=30) as client,
        ):
            yield Api(service, client, database)
    finally:
        clear_prefix(prefix)
        drop_database(database)


@pytest.fixture(scope="session")
def api() -> Iterator[Api]:
    """The main service: high rate limits, CORS and TrustedHost configured."""
    yield from _start("main")


@pytest.fixture(scope="session")
def auth_api() -> Iterator[Api]:
    """Real Argon2 costs (the defaults) and the default-like login limit of 5/minute. The
    per-account throttle starts late: the timing test fails one account a dozen times to
    measure Argon2, not the throttle (both of its paths pay the throttle's lookup alike)."""
    yield from _start(
        "auth",
        ARGON2_MEMORY_KIB="65536",
        ARGON2_TIME_COST="3",
        RATE_LIMIT_LOGIN="5/minute",
        LOGIN_THROTTLE_FREE_FAILURES="50",
    )
