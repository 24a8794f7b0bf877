"""Signing-key lifecycle rules: a key's state at a moment, and what a rotation changes.

A key is `next` (published, not signing) until it is activated, `active` (signing) until
it is retired, `retired` (published so tokens it signed still verify) until its deletion
time, then `deleted` (neither published nor accepted). States follow from stored times and
the clock, so every replica reaches the same answer without talking to the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class KeyTimes:
    """Lifecycle times of one key, in epoch seconds (None: not scheduled)."""

    kid: str
    published_at: float
    activated_at: float | None
    retired_at: float | None
    deleted_at: float | None

    def state(self, now: float) -> KeyState:
        if self.deleted_at is not None and self.deleted_at <= now:
            return KeyState.DELETED
        if self.retired_at is not None and self.retired_at <= now:
            return KeyState.RETIRED
        if self.activated_at is not None and self.activated_at <= now:
            return KeyState.ACTIVE
        return KeyState.NEXT

    def is_published(self, now: float) -> bool:
        return self.state(now) is not KeyState.DELETED


@dataclass(frozen=True, slots=True)
class Policy:
    """publish_delay: how long a key is published before it may sign (the JWKS max-age plus
    the replicas' refresh interval, so no cache anywhere can miss it); overlap: how long a
    retired key stays published (at least max-age plus the longest token lifetime)."""

    publish_delay_seconds: float
    overlap_seconds: float

    def ready_at(self, key: KeyTimes) -> float:
        return key.published_at + self.publish_delay_seconds


def signer(keys: Sequence[KeyTimes], now: float) -> KeyTimes | None:
    """The active key activated last; normally the only active key."""
    active = [key for key in keys if key.state(now) is KeyState.ACTIVE]
    return max(active, key=lambda key: key.activated_at or 0.0, default=None)


def pending(keys: Sequence[KeyTimes], now: float) -> list[KeyTimes]:
    """Next keys, oldest first (the one a rotation activates)."""
    return sorted(
        (key for key in keys if key.state(now) is KeyState.NEXT), key=lambda key: key.published_at
    )


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """What one `keys rotate` does. `bootstrap` is the only case that activates a key on the
    spot: with no key at all there is no JWKS any consumer could have cached."""

    bootstrap: bool = False
    activate: str | None = None
    retire: tuple[str, ...] = ()
    publish_next: bool = False
    waiting_for: KeyTimes | None = None


def plan_rotation(keys: Sequence[KeyTimes], now: float, policy: Policy) -> RotationPlan:
    published = [key for key in keys if key.is_published(now)]
    if not published:
        return RotationPlan(bootstrap=True, publish_next=True)
    queue = pending(published, now)
    if queue and policy.ready_at(queue[0]) <= now:
        retiring = tuple(key.kid for key in published if key.state(now) is KeyState.ACTIVE)
        return RotationPlan(activate=queue[0].kid, retire=retiring, publish_next=len(queue) == 1)
    if queue:
        return RotationPlan(waiting_for=queue[0])
    # Nothing queued: publish the key the next rotation activates. (With only retired keys
    # left, nothing signs until then: a forced retirement's price, never a silent risk.)
    return RotationPlan(publish_next=True)
