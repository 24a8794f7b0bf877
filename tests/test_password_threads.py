"""Argon2 runs in threads of its own at a lower CPU priority than the event loop, so a login
storm cannot starve the requests around it."""

from __future__ import annotations

import asyncio
import os
import threading

from app.services.passwords import HASHING_NICENESS, PasswordService
from app.settings import Settings


def _nice(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


async def test_hashing_threads_run_below_the_event_loop() -> None:
    service = PasswordService(
        Settings(APP_ENV="test", ARGON2_MEMORY_KIB=64, ARGON2_TIME_COST=1, ARGON2_PARALLELISM=1)
    )
    loop_thread = threading.get_native_id()
    before = _nice(loop_thread)
    hashed = await service.hash("a password")
    assert await service.verify(hashed, "a password")
    assert not await service.verify(hashed, "another password")
    hashing_thread = await asyncio.get_running_loop().run_in_executor(
        service._executor, threading.get_native_id
    )
    assert hashing_thread != loop_thread
    assert _nice(hashing_thread) == min(19, before + HASHING_NICENESS)
    assert _nice(loop_thread) == before
