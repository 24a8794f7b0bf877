"""An app that closes gives back what it started: nothing of it runs on afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from app.settings import Settings
from tests.support.app_harness import AppHarness, start_harness

T = TypeVar("T")
# Half the sync period the keeper test sets: a stop that waited out a period fails too.
STOP_WITHIN = 1.5


def _hashing_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("argon2")}


async def test_closing_the_app_ends_its_password_hashing_threads(
    settings_factory: Callable[..., Settings],
) -> None:
    before = _hashing_threads()
    harness, stop = await start_harness(settings_factory())
    await harness.sign_up("closing@example.com")  # hashes: the pool has started a thread
    started = _hashing_threads() - before
    assert started
    await stop()
    for thread in started:
        await asyncio.to_thread(thread.join, 5)
    assert not [thread.name for thread in started if thread.is_alive()]


def _dropping_one_cancel(
    real: Callable[[], Awaitable[T]],
) -> tuple[Callable[[], Awaitable[T]], asyncio.Event]:
    """`real`, whose first call swallows the cancel meant for its caller and then completes, as
    Python 3.11's asyncio.wait_for does when its inner await completes in the same step, or as
    a driver does that turns a cancel landing mid-query into an error of its own. The event is
    set once that call waits."""
    entered = asyncio.Event()

    async def call() -> T:
        if not entered.is_set():
            entered.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
        return await real()

    return call, entered


async def _stops_within(seconds: float, stop: Callable[[], Awaitable[None]]) -> bool:
    # Not asyncio.timeout: a stop that suppresses CancelledError would swallow its cancel too.
    stopping = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({stopping}, timeout=seconds)
    return stopping in done


async def test_closing_the_app_ends_its_key_reload_even_if_a_reload_drops_the_cancel(
    make_harness: Callable[..., Awaitable[AppHarness]], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await make_harness(SIGNING_KEY_REFRESH_SECONDS="0.05")
    keys = harness.app.state.resources.keys
    refresh, entered = _dropping_one_cancel(keys.refresh)
    monkeypatch.setattr(keys, "refresh", refresh)
    await asyncio.wait_for(entered.wait(), 5)
    assert await _stops_within(STOP_WITHIN, keys.stop)


async def test_closing_the_app_ends_its_session_keeper_even_if_a_sync_drops_the_cancel(
    make_harness: Callable[..., Awaitable[AppHarness]], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await make_harness(SESSION_CACHE_LEASE_SECONDS="9")  # a sync every 3 s
    resources = harness.app.state.resources
    sync, entered = _dropping_one_cancel(resources.login_sessions.sync_cache)
    monkeypatch.setattr(resources.login_sessions, "sync_cache", sync)
    await asyncio.wait_for(entered.wait(), 30)
    assert await _stops_within(STOP_WITHIN, resources.session_keeper.stop)
