"""Key management: rotate, retire, report, and create the very first key."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.key_encryption import KeyEncryption
from app.infra.key_store import KeyStore, from_epoch, to_epoch
from app.models import SigningKey
from app.services import jwk
from app.services.key_lifecycle import KeyState, KeyTimes, Policy, pending, plan_rotation


class KeyLifecycleError(Exception):
    """A request the lifecycle rules refuse; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class KeyStatus:
    kid: str
    algorithm: str
    state: KeyState
    times: KeyTimes
    ready_at: float | None


def times_of(row: SigningKey) -> KeyTimes:
    published = to_epoch(row.published_at)
    assert published is not None
    return KeyTimes(
        kid=row.kid,
        published_at=published,
        activated_at=to_epoch(row.activated_at),
        retired_at=to_epoch(row.retired_at),
        deleted_at=to_epoch(row.deleted_at),
    )


class SigningKeyManager:
    def __init__(
        self,
        store: KeyStore,
        encryption: KeyEncryption,
        policy: Policy,
        algorithm: jwk.AsymmetricAlgorithm,
    ) -> None:
        self._store = store
        self._encryption = encryption
        self.policy = policy
        self._algorithm = algorithm

    def _new_row(self, now: float, *, active: bool) -> SigningKey:
        material = jwk.generate(self._algorithm)
        return SigningKey(
            kid=material.kid,
            algorithm=material.algorithm,
            public_jwk=orjson.dumps(material.public_jwk).decode(),
            private_key_ciphertext=self._encryption.encrypt(material.kid, material.private_pkcs8),
            kek_id=self._encryption.kek_id,
            published_at=from_epoch(now),
            activated_at=from_epoch(now) if active else None,
        )

    def _retire(self, row: SigningKey, now: float) -> None:
        row.retired_at = from_epoch(now)
        row.deleted_at = from_epoch(now + self.policy.overlap_seconds)

    @staticmethod
    def _wipe_deleted(rows: list[SigningKey], now: float) -> None:
        for row in rows:
            deleted = to_epoch(row.deleted_at)
            if deleted is not None and deleted <= now and row.private_key_ciphertext:
                row.private_key_ciphertext = None

    async def status(self, now: float | None = None) -> list[KeyStatus]:
        now = time.time() if now is None else now
        result = []
        for row in await self._store.load():
            times = times_of(row)
            state = times.state(now)
            ready = self.policy.ready_at(times) if state is KeyState.NEXT else None
            result.append(KeyStatus(row.kid, row.algorithm, state, times, ready))
        return result

    async def bootstrap(self, now: float | None = None) -> str | None:
        """Create and activate a first key when no key is published at all; else None."""
        now = time.time() if now is None else now
        async with self._store.locked() as session:
            rows = await self._store.rows(session)
            if any(times_of(row).is_published(now) for row in rows):
                return None
            row = self._new_row(now, active=True)
            session.add(row)
            return row.kid

    def _check_kek(self, rows: list[SigningKey], now: float) -> None:
        """Refuse to add keys under another KEK than the live ones: the replicas could not
        decrypt them, and the first activation would stop every login."""
        foreign = sorted(
            {
                row.kek_id
                for row in rows
                if row.private_key_ciphertext and times_of(row).is_published(now)
            }
            - {self._encryption.kek_id}
        )
        if foreign:
            raise KeyLifecycleError(
                f"the published keys were encrypted with KEK {', '.join(foreign)} but the "
                f"configured SIGNING_KEY_ENCRYPTION_KEY is {self._encryption.kek_id}; run with "
                "the key-encryption key the service uses"
            )

    async def rotate(self, now: float | None = None) -> list[str]:
        async with self._store.locked() as session:
            # Read the clock once the lock is held: a key's publication time must not precede
            # the moment it becomes visible by more than this transaction's commit.
            now = time.time() if now is None else now
            rows = await self._store.rows(session)
            self._check_kek(rows, now)
            self._wipe_deleted(rows, now)
            plan = plan_rotation([times_of(row) for row in rows], now, self.policy)
            by_kid = {row.kid: row for row in rows}
            lines: list[str] = []
            if plan.bootstrap:
                row = self._new_row(now, active=True)
                session.add(row)
                lines.append(f"no key existed: created {row.kid} and activated it")
            if plan.activate:
                for kid in plan.retire:
                    self._retire(by_kid[kid], now)
                    lines.append(
                        f"retired {kid}; published until {_iso(now + self.policy.overlap_seconds)}"
                    )
                by_kid[plan.activate].activated_at = from_epoch(now)
                lines.append(f"activated {plan.activate}")
            if plan.waiting_for is not None:
                lines.append(
                    f"next key {plan.waiting_for.kid} may sign from "
                    f"{_iso(self.policy.ready_at(plan.waiting_for))}; nothing to activate yet"
                )
            if plan.publish_next:
                row = self._new_row(now, active=False)
                session.add(row)
                lines.append(
                    f"published next key {row.kid}; a rotation from "
                    f"{_iso(now + self.policy.publish_delay_seconds)} activates it"
                )
            return lines

    async def retire(self, kid: str, *, force: bool, now: float | None = None) -> list[str]:
        async with self._store.locked() as session:
            now = time.time() if now is None else now
            rows = await self._store.rows(session)
            row = next((row for row in rows if row.kid == kid), None)
            if row is None:
                raise KeyLifecycleError(f"no signing key {kid}")
            state = times_of(row).state(now)
            if state is KeyState.DELETED:
                return [f"{kid} is already deleted"]
            if state is KeyState.NEXT:
                # It never signed: withdrawing it cannot invalidate anything.
                row.deleted_at, row.private_key_ciphertext = from_epoch(now), None
                return [f"withdrew next key {kid} (it never signed)"]
            if state is KeyState.RETIRED:
                if not force:
                    raise KeyLifecycleError(
                        f"{kid} is retired and stays published until "
                        f"{_iso(to_epoch(row.deleted_at) or now)} so the tokens it signed "
                        "verify; --force deletes it now (those tokens are refused at once)"
                    )
                row.deleted_at, row.private_key_ciphertext = from_epoch(now), None
                return [f"deleted {kid} now; tokens it signed are refused"]
            return await self._retire_active(session, rows, row, force=force, now=now)

    async def _retire_active(
        self,
        session: AsyncSession,
        rows: list[SigningKey],
        row: SigningKey,
        *,
        force: bool,
        now: float,
    ) -> list[str]:
        queue = pending([times_of(other) for other in rows], now)
        ready = [key for key in queue if self.policy.ready_at(key) <= now]
        if ready:
            successor = next(other for other in rows if other.kid == ready[0].kid)
            self._retire(row, now)
            successor.activated_at = from_epoch(now)
            return [f"retired {row.kid}; activated {successor.kid}"]
        if not force:
            waiting = (
                f"next key {queue[0].kid} may sign from {_iso(self.policy.ready_at(queue[0]))}"
                if queue
                else "no next key is published (run `keys rotate` first)"
            )
            raise KeyLifecycleError(
                f"{row.kid} is the active key and {waiting}. --force replaces it at once for a "
                "compromised key: it is deleted, a new key signs immediately, and consumers "
                "holding a cached JWKS refuse new tokens until they refetch it"
            )
        row.retired_at = from_epoch(now)
        row.deleted_at, row.private_key_ciphertext = from_epoch(now), None
        replacement = self._new_row(now, active=True)
        session.add(replacement)
        return [f"deleted compromised key {row.kid}; {replacement.kid} signs from now"]


def _iso(seconds: float) -> str:
    return from_epoch(seconds).isoformat(timespec="seconds")
