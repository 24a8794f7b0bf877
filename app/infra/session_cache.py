"""Redis cache of session state: "active" or "revoked" per session id, trusted only under a lease.

PostgreSQL is the truth; this cache only saves the database a lookup per request. Two rules
keep it from ever admitting a revoked session:

- A revocation writes a tombstone after its commit, overwriting whatever is cached, while a
  refill after a database read only ever adds a missing entry (SET NX): a stale "active"
  loaded before the commit cannot land on top of the tombstone.
- Entries count only while the lease key exists. The lease is renewed (to an absolute
  deadline fixed before the renewer looked) only when PostgreSQL's backlog of revocations
  whose tombstone may be missing is empty. A revocation that cannot write its tombstone
  therefore waits out the lease before it answers: after that no entry is trusted until
  the tombstone is in, whether Redis was down, frozen or restarted empty.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Final, Literal

from app.infra.redis import RedisGateway, RedisUnavailableError

ACTIVE: Final = b"a"
REVOKED: Final = b"r"
CachedState = Literal["active", "revoked", "unknown", "unleased"]


class SessionKeys:
    """The one place session keys are spelled."""

    def __init__(self, prefix: str) -> None:
        self._session = f"{prefix}:sess:"
        self.lease = f"{prefix}:sess-lease"

    def session(self, session_id: uuid.UUID) -> str:
        return f"{self._session}{session_id.hex}"


class SessionCache:
    def __init__(
        self,
        redis: RedisGateway,
        *,
        prefix: str,
        lease_seconds: float,
        active_ttl_seconds: int,
        revoked_ttl_seconds: int,
    ) -> None:
        self._redis = redis
        self.keys = SessionKeys(prefix)
        self.lease_seconds = lease_seconds
        self._active_ttl = active_ttl_seconds
        # Longer than any access token issued before the revocation can live.
        self._revoked_ttl = revoked_ttl_seconds

    def state_keys(self, session_id: uuid.UUID) -> list[str]:
        """The keys admission reads, in the order `state` takes their values."""
        return [self.keys.session(session_id), self.keys.lease]

    @staticmethod
    def state(entry: object, lease: object) -> CachedState:
        if entry == REVOKED:
            # A tombstone is never stale: revocation is final.
            return "revoked"
        if lease is None:
            return "unleased"
        return "active" if entry == ACTIVE else "unknown"

    async def refill(self, session_id: uuid.UUID, *, active: bool) -> None:
        """Best effort, never over an existing entry (it may be a newer tombstone)."""
        value, ttl = (ACTIVE, self._active_ttl) if active else (REVOKED, self._revoked_ttl)
        key = self.keys.session(session_id)
        try:
            await self._redis.call(
                "revocation", lambda: self._redis.client.set(key, value, ex=ttl, nx=True)
            )
        except RedisUnavailableError:
            return

    async def tombstone(self, session_ids: Iterable[uuid.UUID]) -> bool:
        """Mark sessions revoked; False when Redis did not confirm it."""
        keys = [self.keys.session(session_id) for session_id in session_ids]
        if not keys:
            return True

        async def write() -> None:
            async with self._redis.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, REVOKED, ex=self._revoked_ttl)
                await pipe.execute()

        try:
            await self._redis.call("revocation", write)
        except RedisUnavailableError:
            return False
        return True

    def lease_deadline(self) -> int:
        """Milliseconds since the epoch at which a lease renewed from now must end; take it
        before looking at the backlog."""
        return int((time.time() + self.lease_seconds) * 1000)

    async def renew_lease(self, deadline_ms: int) -> bool:
        # An absolute deadline: a renewal delayed in a frozen Redis cannot extend past it.
        if deadline_ms <= int(time.time() * 1000):
            return False
        try:
            await self._redis.call(
                "revocation",
                lambda: self._redis.client.set(self.keys.lease, b"1", pxat=deadline_ms),
            )
        except RedisUnavailableError:
            return False
        return True
