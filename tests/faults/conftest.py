"""Fixtures for fault injection: a database per test, the service's env, and the result table."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from tests.faults import report
from tests.faults.tools import SHARED_REDIS
from tests.support.database import drop_database, fresh_database

JWT_KEY = "faults-test-jwt-key-0123456789abcdef-0123456789"


@pytest.fixture
def fault_report() -> Callable[..., None]:
    return report.record


@pytest.fixture
def fault_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated database named after the test; dropped afterwards, together with
    the run's keys in the shared Redis DB."""
    name = "user_service_fault_" + request.node.name.removeprefix("test_")[:40]
    fresh_database(name)
    yield name
    drop_database(name)
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        keys = list(client.scan_iter("faults:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def service_env(database_url: str, run: str, **overrides: str) -> dict[str, str]:
    """Settings for a service under fault: small pools, short timeouts, no rate limits in
    the way, keys in Redis under a prefix of this run only."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": SHARED_REDIS,
        "CACHE_KEY_PREFIX": f"faults:{run}",
        "JWT_SECRET_KEY": JWT_KEY,
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "1",
        "DB_POOL_TIMEOUT": "1",
        "DB_CONNECT_TIMEOUT": "2",
        "DB_STATEMENT_TIMEOUT_MS": "1000",
        "READINESS_TIMEOUT": "1",
        "REDIS_BREAKER_COOLDOWN": "1",
        "RATE_LIMIT_LOGIN": "100000/minute",
        "RATE_LIMIT_API": "1000000/minute",
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env
