"""An app that closes gives back what it started: nothing of it runs on afterwards."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from app.settings import Settings
from tests.support.app_harness import start_harness


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
