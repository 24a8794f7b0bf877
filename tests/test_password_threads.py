"""Argon2 runs in threads of its own under the idle scheduling class, so hashing takes only
the CPU the event loop leaves unused and cannot delay the requests around it."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from app.services import passwords
from app.services.passwords import HASHING_NICENESS, PasswordService
from app.settings import Settings


def _service() -> PasswordService:
    return PasswordService(
        Settings(APP_ENV="test", ARGON2_MEMORY_KIB=64, ARGON2_TIME_COST=1, ARGON2_PARALLELISM=1)
    )


async def _hashing_thread(service: PasswordService) -> int:
    hashed = await service.hash("a password")
    assert await service.verify(hashed, "a password")
    assert not await service.verify(hashed, "another password")
    return await asyncio.get_running_loop().run_in_executor(
        service._executor, threading.get_native_id
    )


async def test_hashing_threads_run_in_the_idle_class_and_the_event_loop_does_not() -> None:
    service = _service()
    loop_thread = threading.get_native_id()
    loop_policy = os.sched_getscheduler(loop_thread)
    hashing_thread = await _hashing_thread(service)
    service.close()
    assert hashing_thread != loop_thread
    # The kernel preempts an idle-class thread the moment the event loop wakes up.
    assert os.sched_getscheduler(hashing_thread) == os.SCHED_IDLE
    assert os.sched_getscheduler(loop_thread) == loop_policy != os.SCHED_IDLE


async def test_where_the_idle_class_is_refused_hashing_threads_are_niced_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        raise PermissionError(1, "Operation not permitted")

    # A seccomp profile may refuse sched_setscheduler; the kernel is the one thing replaced.
    monkeypatch.setattr(passwords.os, "sched_setscheduler", refuse)
    service = _service()
    loop_thread = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, loop_thread)
    hashing_thread = await _hashing_thread(service)
    service.close()
    assert os.sched_getscheduler(hashing_thread) != os.SCHED_IDLE
    assert os.getpriority(os.PRIO_PROCESS, hashing_thread) == min(19, before + HASHING_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, loop_thread) == before
