"""Cache behaviour on the real Redis that the API tests cannot reach: races and the breaker."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from app.infra.redis import CircuitBreaker
from tests.support.app_harness import AppHarness


async def test_invalidation_during_a_load_keeps_the_old_row_out(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    cache = harness.app.state.resources.cache
    user_id = uuid.uuid4()
    loading = asyncio.Event()
    release = asyncio.Event()

    async def slow_loader() -> bytes:
        loading.set()
        await release.wait()
        return b'{"full_name": "before the write"}'

    reader = asyncio.create_task(cache.read_through(user_id, slow_loader))
    await loading.wait()
    await cache.invalidate(user_id)  # a write committed while the reader was loading
    release.set()
    assert await reader == b'{"full_name": "before the write"}'
    assert await redis_client.get(cache.key(user_id)) is None
    assert await redis_client.get(f"{cache.key(user_id)}:lock") is None


async def test_a_load_with_no_write_in_between_is_stored(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    cache = harness.app.state.resources.cache
    user_id = uuid.uuid4()

    async def loader() -> bytes:
        return b"{}"

    assert await cache.read_through(user_id, loader) == b"{}"
    assert await redis_client.get(cache.key(user_id)) == b"{}"
    assert await redis_client.get(f"{cache.key(user_id)}:lock") is None


def test_breaker_opens_after_threshold_and_closes_on_success() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_seconds=60)
    breaker.record_failure()
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open
    breaker.record_success()
    assert not breaker.is_open


def test_breaker_allows_a_trial_after_the_cooldown() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_seconds=0.01)
    breaker.record_failure()
    assert breaker.is_open
    import time

    time.sleep(0.02)
    assert not breaker.is_open  # the next call goes through as a trial
    breaker.record_failure()
    assert breaker.is_open  # a failed trial opens it again at once


async def test_with_redis_unavailable_concurrent_misses_share_one_load(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    resources = harness.app.state.resources
    cache = resources.cache
    calls = 0

    async def loader() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"{}"

    for _ in range(5):
        resources.redis.breaker.record_failure()
    assert resources.redis.breaker.is_open
    try:
        results = await asyncio.gather(
            *(cache.read_through(uuid.UUID(int=7), loader) for _ in range(20))
        )
    finally:
        resources.redis.breaker.record_success()
    assert results == [b"{}"] * 20
    assert calls == 1
    assert await redis_client.get(cache.key(uuid.UUID(int=7))) is None  # nothing stored
