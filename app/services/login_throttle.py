"""Per-account login throttling in PostgreSQL, shared by every replica: after a few failures
for one account, further attempts wait a delay that doubles with each failure, up to a cap.

It slows guessing one account from many addresses (which the per-address limit cannot),
without a permanent lockout: the delay is capped, attempts made while an account waits are
refused unverified and do not count, and failures are forgotten after a quiet period."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import RateLimitedError
from app.models import LoginThrottle
from app.observability.metrics import record_auth
from app.settings import Settings


def _aware(moment: datetime) -> datetime:
    # SQLite (embedded development mode) hands timestamps back without their zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def account_key(email: str) -> str:
    # A hash: attacker-chosen emails (most of them unknown accounts) are not stored as typed.
    return hashlib.sha256(email.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int
    base_delay_seconds: float
    max_delay_seconds: float
    forget_after: timedelta

    def delay(self, failures: int) -> float:
        """Seconds an account waits after its `failures`-th consecutive failure."""
        over = failures - self.free_failures
        if over <= 0:
            return 0.0
        return float(
            min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** min(over - 1, 30))
        )


class LoginThrottleService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._enabled = settings.login_throttle_enabled
        self.policy = ThrottlePolicy(
            free_failures=settings.login_throttle_free_failures,
            base_delay_seconds=settings.login_throttle_base_delay_seconds,
            max_delay_seconds=settings.login_throttle_max_delay_seconds,
            forget_after=timedelta(seconds=settings.login_throttle_forget_seconds),
        )

    def check(self, has_row: bool, blocked_until: datetime | None) -> bool:
        """Refuse (429) while the account waits; True when it has failures on record. Given
        the account's throttle row as the login read it (see AuthService)."""
        if not self._enabled or not has_row:
            return False
        if blocked_until is not None:
            wait = (_aware(blocked_until) - datetime.now(UTC)).total_seconds()
            if wait > 0:
                record_auth("login_throttled")
                retry = str(math.ceil(wait))
                raise RateLimitedError(
                    f"Too many failed logins for this account; retry in {retry}s.",
                    headers={"Retry-After": retry},
                )
        return True

    async def failed(self, email: str) -> None:
        if not self._enabled:
            return
        key = account_key(email)
        for _ in range(2):  # a concurrent first failure may insert the row under us
            try:
                await self._count_failure(key)
                return
            except IntegrityError:
                continue

    async def _count_failure(self, key: str) -> None:
        now = datetime.now(UTC)
        async with self._sessions() as db:
            row = await db.scalar(
                select(LoginThrottle).where(LoginThrottle.account_hash == key).with_for_update()
            )
            if row is None:
                row = LoginThrottle(account_hash=key, failures=0, last_failure_at=now)
                db.add(row)
            elif now - _aware(row.last_failure_at) > self.policy.forget_after:
                row.failures = 0
            row.failures += 1
            row.last_failure_at = now
            delay = self.policy.delay(row.failures)
            row.blocked_until = now + timedelta(seconds=delay) if delay else None
            await db.commit()

    async def succeeded(self, email: str) -> None:
        async with self._sessions() as db:
            await db.execute(
                delete(LoginThrottle).where(LoginThrottle.account_hash == account_key(email))
            )
            await db.commit()
