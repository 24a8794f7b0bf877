"""Shared fixtures: the run's own redis-server and migrated database, the app over ASGI."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy import text

from app.settings import Settings
from tests.support import database as databases
from tests.support.app_harness import AppHarness, start_harness
from tests.support.database import fresh_database
from tests.support.isolation import isolate_environment, redis_url
from tests.support.redis_server import RedisServer

_run_redis: RedisServer | None = None


def pytest_configure(config: pytest.Config) -> None:
    # httpx logs every request at INFO: a failed load or fault test's report carried
    # thousands of captured lines, and the part of CI's output that is kept lost its assertion.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Settings() and every service a test starts see only what the tests set.
    isolate_environment(
        os.environ, [field.alias for field in Settings.model_fields.values() if field.alias]
    )
    # Test modules build Redis URLs at import: the run's server must be up before collection.
    global _run_redis
    if "TEST_REDIS_PORT" not in os.environ and _run_redis is None:
        _run_redis = RedisServer()
        _run_redis.start()
        os.environ["TEST_REDIS_PORT"] = str(_run_redis.port)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in sorted(databases.CREATED):
        databases.drop_database(name)
    if _run_redis is not None:
        _run_redis.kill()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not faults"` / `-m "not security"` skip the slow suites against a running service.
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        for suite in ("faults", "security", "ha"):
            if f"tests/{suite}/" in path:
                item.add_marker(getattr(pytest.mark, suite))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.faults import report

    report.print_table(terminalreporter)


def _redis_test_url() -> str:
    return os.environ.get("TEST_REDIS_URL") or redis_url(1)


DATABASE_NAME = "user_service_test"


@pytest.fixture(scope="session")
def database_url() -> str:
    return fresh_database(DATABASE_NAME)


@pytest.fixture(scope="session")
def settings_factory(database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "APP_ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": _redis_test_url(),
            "DB_POOL_SIZE": 3,
            "DB_MAX_OVERFLOW": 2,
            "ARGON2_MEMORY_KIB": 8192,
            "ARGON2_TIME_COST": 1,
            "RATE_LIMIT_LOGIN": "1000/minute",
            "LOG_FORMAT": "json",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(_redis_test_url())
    yield client
    await client.aclose()


async def reset(app: FastAPI) -> None:
    resources = app.state.resources
    async with resources.engine.begin() as connection:
        await connection.execute(
            text("TRUNCATE users, sessions, session_cache_backlog, login_throttle")
        )
    client = aioredis.Redis.from_url(_redis_test_url())
    await client.flushdb()
    await client.aclose()
    # The flush took the session cache's lease: renew it now rather than at the next tick.
    await resources.login_sessions.sync_cache()


@pytest.fixture(scope="session")
async def session_harness(settings_factory: Callable[..., Settings]) -> AsyncIterator[AppHarness]:
    harness, stop = await start_harness(settings_factory())
    yield harness
    await stop()


@pytest.fixture
async def harness(session_harness: AppHarness) -> AppHarness:
    await reset(session_harness.app)
    return session_harness


@pytest.fixture
async def make_harness(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Any]]:
    """A dedicated app with other settings (tight limits, a dead Redis, ...)."""
    stops: list[Callable[[], Any]] = []

    async def make(
        clean: bool = True, app_kwargs: dict[str, Any] | None = None, **overrides: Any
    ) -> AppHarness:
        harness, stop = await start_harness(settings_factory(**overrides), **(app_kwargs or {}))
        stops.append(stop)
        if clean:
            await reset(harness.app)
        return harness

    yield make
    for stop in stops:
        await stop()
