"""Argon2id password hashing, run in worker threads so the event loop never blocks on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from opentelemetry import trace

from app.observability.metrics import PASSWORD_HASH_DURATION
from app.settings import Settings

tracer = trace.get_tracer(__name__)
T = TypeVar("T")
# Where the idle class is refused (a seccomp profile may refuse sched_setscheduler), the
# hashing threads are niced instead: a busy event loop then gets about ten times their share
# of a contended core, though it may wait out the rest of their time slice on each wake-up.
HASHING_NICENESS = 10


def lower_thread_priority() -> None:
    """Put this thread in the idle scheduling class (Linux schedules threads one by one).

    An idle-class thread runs on CPU time no other thread wants, and the kernel preempts it
    the moment another thread wakes up, so the event loop does not wait for a hash to yield.
    At nice +10 alone, during a login storm on two cores, each event loop spent about a
    quarter of its time waiting for a CPU, and cached reads at 30% of their peak saw their
    p99 go from about 10 ms to several hundred; in the idle class, to tens. The cost: a
    worker kept fully busy by other requests runs no hashes until it has a moment free, so
    its logins, sign-ups and password changes wait; that is a matter of capacity, not of the
    scheduler.

    The class orders threads within their process group only (the container's cgroup, or the
    session where the kernel groups by session): to other groups the service's group looks
    busy while it hashes, and shares the cores with them by weight, as any busy process does.
    And a login's own work on the event loop (its queries, tokens and session, about 7 ms of
    the loop's CPU each on a 2-core bench machine) still delays the reads that arrive during
    it: that, not the hashing, is what a login storm does to their p99. Best effort: where
    neither call is allowed the thread keeps running as it was."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    except (OSError, AttributeError):
        pass  # refused, or a system without the idle class: nice the thread instead
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, current + HASHING_NICENESS)


class PasswordService:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Each hash holds ARGON2_MEMORY_KIB of memory and a core: bound how many run at once,
        # in threads of their own at a lower priority than the event loop's.
        self._executor = ThreadPoolExecutor(
            max_workers=settings.password_hash_concurrency,
            thread_name_prefix="argon2",
            initializer=lower_thread_priority,
        )
        self._dummy_hash: str | None = None
        self._hash_seconds = PASSWORD_HASH_DURATION.labels(operation="hash")
        self._verify_seconds = PASSWORD_HASH_DURATION.labels(operation="verify")

    async def hash(self, password: str) -> str:
        with tracer.start_as_current_span("password.hash"):
            started = time.perf_counter()
            hashed = await self._run(self._hasher.hash, password)
            self._hash_seconds.observe(time.perf_counter() - started)
            return hashed

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password. With no hash (unknown user) a dummy hash is checked instead,
        so that an unknown email costs the same time as a wrong password."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("timing-equaliser-not-a-real-password")
            await self._verify(self._dummy_hash, password)
            return False
        return await self._verify(password_hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        with tracer.start_as_current_span("password.verify"):
            started = time.perf_counter()
            ok = await self._run(self._check, password_hash, password)
            self._verify_seconds.observe(time.perf_counter() - started)
            return ok

    async def _run(self, function: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def close(self) -> None:
        """End the hashing threads once their current hash is done, without blocking the event
        loop on it. Closing comes after the drain: a hash still running has nobody waiting."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def warm_up(self) -> None:
        """Compute the dummy hash at start-up so the first unknown-email login is not faster."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("timing-equaliser-not-a-real-password")
