"""The bare one-Redis-GET endpoint the cached read is measured against, against a real
redis-server: when the machine stalls and more requests pile up than its pool has
connections, they wait for one, as the service's requests do, instead of failing."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Iterator
from types import ModuleType

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.redis_server import RedisServer

# More than the endpoint's pool holds (64 connections).
CONCURRENT = 100


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer().running() as server:
        yield server


@pytest.fixture
def baselines(
    database_url: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    # The module reads its addresses when it is imported.
    import scripts.bench.baselines as module

    return importlib.reload(module)


async def test_requests_beyond_the_pool_wait_for_a_connection(
    baselines: ModuleType, redis_server: RedisServer
) -> None:
    user_id = uuid.uuid4()
    control = aioredis.Redis.from_url(redis_server.url)
    await control.set(f"bench:{user_id}", b'{"id": "stored"}')
    app = baselines.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            # Every request is in flight while Redis answers nobody, as in a stall.
            await control.execute_command("CLIENT", "PAUSE", "300", "ALL")
            responses = await asyncio.gather(
                *(client.get(f"/redis/{user_id}") for _ in range(CONCURRENT))
            )
    await control.aclose()
    assert [response.status_code for response in responses] == [200] * CONCURRENT
    assert {response.content for response in responses} == {b'{"id": "stored"}'}
