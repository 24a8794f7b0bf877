"""Sessions in PostgreSQL: exact revocation on every worker, the refresh grace window, a Redis
that forgets or cannot take a write, and the sessions API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from sqlalchemy import bindparam, text

from tests.support.app_harness import PASSWORD, AppHarness
from tests.support.database import REPO
from tests.support.service import free_port


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _status(harness: AppHarness, token: str) -> int:
    return (await harness.client.get("/api/v1/users/me", headers=_bearer(token))).status_code


async def _refresh(harness: AppHarness, token: str, agent: str | None = None) -> Any:
    headers = {"user-agent": agent} if agent else {}
    return await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": token}, headers=headers
    )


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _second_worker(make_harness: Callable[..., Any]) -> AppHarness:
    """Another app on the same PostgreSQL and Redis: what another worker or replica sees."""
    other: AppHarness = await make_harness(clean=False)
    return other


async def _worker_without_redis(make_harness: Callable[..., Any]) -> AppHarness:
    """Another worker on the same PostgreSQL whose Redis is unreachable, its lease keeper
    stopped so only the test decides when it syncs."""
    cut_off: AppHarness = await make_harness(
        clean=False, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    await cut_off.app.state.resources.session_keeper.stop()
    return cut_off


async def test_tokens_carry_the_session_id(harness: AppHarness) -> None:
    await harness.sign_up("sid@example.com")
    tokens = await harness.login("sid@example.com")
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    refresh = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    assert access["sid"] == refresh["sid"]
    uuid.UUID(access["sid"])
    async with harness.app.state.resources.engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT refresh_hash, revoked_at FROM sessions WHERE id = :id"),
                {"id": access["sid"]},
            )
        ).one()
    # The row keeps a hash of the refresh token, never the token.
    assert row.revoked_at is None and len(row.refresh_hash) == 64
    assert row.refresh_hash not in tokens["refresh_token"]


async def test_same_second_changes_refuse_earlier_tokens_on_every_worker(
    harness: AppHarness, make_harness: Callable[..., Any]
) -> None:
    other = await _second_worker(make_harness)
    await harness.sign_up("root@example.com")
    await harness.make_admin("root@example.com")
    admin = await harness.login("root@example.com")
    cases = {
        "password": lambda uid: {"password": "another password 123"},
        "deactivation": lambda uid: {"is_active": False},
        "role": lambda uid: {"is_admin": True},
    }
    for name, body in cases.items():
        user = await harness.sign_up(f"{name}@example.com")
        earlier = await harness.login(f"{name}@example.com")
        # Both workers have seen the session alive (and cached it).
        assert await _status(harness, earlier["access_token"]) == 200
        assert await _status(other, earlier["access_token"]) == 200
        issued = jwt.decode(earlier["access_token"], options={"verify_signature": False})["iat"]
        changed = await other.client.patch(
            f"/api/v1/users/{user['id']}",
            json=body(user["id"]),
            headers=_bearer(admin["access_token"]),
        )
        assert changed.status_code == 200, (name, changed.text)
        assert int(time.time()) - issued <= 1, "the change must come right after the login"
        for worker in (harness, other):
            assert await _status(worker, earlier["access_token"]) == 401, name
            assert (await _refresh(worker, earlier["refresh_token"])).status_code == 401, name
    # Deletion by the user itself, in the same second as another of its logins.
    doomed = await harness.sign_up("deleted@example.com")
    first = await harness.login("deleted@example.com")
    second = await harness.login("deleted@example.com")
    assert await _status(other, first["access_token"]) == 200
    deleted = await other.client.delete(
        f"/api/v1/users/{doomed['id']}", headers=_bearer(second["access_token"])
    )
    assert deleted.status_code == 204
    for worker in (harness, other):
        for pair in (first, second):
            assert await _status(worker, pair["access_token"]) == 401
            assert (await _refresh(worker, pair["refresh_token"])).status_code == 401


async def test_role_change_issues_the_new_role_to_later_logins(harness: AppHarness) -> None:
    await harness.sign_up("boss@example.com")
    await harness.make_admin("boss@example.com")
    admin = await harness.login("boss@example.com")
    user = await harness.sign_up("promoted@example.com")
    promoted = await harness.client.patch(
        f"/api/v1/users/{user['id']}",
        json={"is_admin": True},
        headers=_bearer(admin["access_token"]),
    )
    assert promoted.status_code == 200
    fresh = await harness.login("promoted@example.com")
    assert jwt.decode(fresh["access_token"], options={"verify_signature": False})["adm"] is True
    assert (
        await harness.client.get("/api/v1/users", headers=_bearer(fresh["access_token"]))
    ).status_code == 200


async def test_concurrent_refresh_in_the_grace_window_keeps_the_session(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(REFRESH_REUSE_GRACE_SECONDS=2)
    await harness.sign_up("tabs@example.com")
    tokens = await harness.login("tabs@example.com")
    one, two = await asyncio.gather(
        _refresh(harness, tokens["refresh_token"]), _refresh(harness, tokens["refresh_token"])
    )
    assert one.status_code == two.status_code == 200, (one.text, two.text)
    # Both tabs hold the same new pair, and it works.
    for name in ("access_token", "refresh_token"):
        assert one.json()[name] == two.json()[name]
    assert await _status(harness, one.json()["access_token"]) == 200
    # One more late tab, still in the window: the same pair again.
    late = await _refresh(harness, tokens["refresh_token"])
    assert late.status_code == 200
    for name in ("access_token", "refresh_token"):
        assert late.json()[name] == one.json()[name]
    rotated = await _refresh(harness, one.json()["refresh_token"])
    assert rotated.status_code == 200
    assert await _status(harness, rotated.json()["access_token"]) == 200


async def test_refresh_reuse_after_the_grace_window_revokes_the_session(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(REFRESH_REUSE_GRACE_SECONDS=0.5)
    await harness.sign_up("thief@example.com")
    tokens = await harness.login("thief@example.com")
    rotated = await _refresh(harness, tokens["refresh_token"])
    assert rotated.status_code == 200
    before = _counter("user_service_auth_events_total", event="refresh_reuse")
    await asyncio.sleep(0.7)
    replay = await _refresh(harness, tokens["refresh_token"])
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    assert _counter("user_service_auth_events_total", event="refresh_reuse") == before + 1
    # The whole session is gone: the newest pair too.
    assert await _status(harness, rotated.json()["access_token"]) == 401
    assert (await _refresh(harness, rotated.json()["refresh_token"])).status_code == 401
    # The security event it logs is checked on a running service: tests/security/test_logs.py.


async def test_reuse_from_another_client_in_the_window_revokes(
    make_harness: Callable[..., Any],
) -> None:
    harness: AppHarness = await make_harness(REFRESH_REUSE_GRACE_SECONDS=5)
    await harness.sign_up("twoclients@example.com")
    tokens = await harness.login("twoclients@example.com")
    first = await _refresh(harness, tokens["refresh_token"])
    assert first.status_code == 200
    stolen = await _refresh(harness, tokens["refresh_token"], agent="curl/8")
    assert stolen.status_code == 401
    assert await _status(harness, first.json()["access_token"]) == 401


async def test_redis_restarted_empty_logs_nobody_out(
    harness: AppHarness, redis_client: aioredis.Redis
) -> None:
    await harness.sign_up("survivor@example.com")
    tokens = await harness.login("survivor@example.com")
    revoked = await harness.login("survivor@example.com")
    assert (
        await harness.client.post("/api/v1/auth/logout", headers=_bearer(revoked["access_token"]))
    ).status_code == 204
    await redis_client.flushdb()
    for _ in range(3):
        assert await _status(harness, tokens["access_token"]) == 200
        assert await _status(harness, revoked["access_token"]) == 401
    refreshed = await _refresh(harness, tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert (await _refresh(harness, revoked["refresh_token"])).status_code == 401


async def test_a_revocation_redis_cannot_take_still_holds_where_redis_is_stale(
    harness: AppHarness, make_harness: Callable[..., Any]
) -> None:
    """One worker cannot reach Redis (frozen, partitioned) while another reads a Redis that
    still says "active": once the logout has answered, the stale entry is not trusted."""
    await harness.sign_up("stale@example.com")
    tokens = await harness.login("stale@example.com")
    assert await _status(harness, tokens["access_token"]) == 200  # cached as active
    resources = harness.app.state.resources
    # This worker's lease keeper is the only one that could repair Redis: stop it, so only
    # the lease running out can protect the stale entry.
    await resources.session_keeper.stop()
    try:
        cut_off = await _worker_without_redis(make_harness)
        await resources.login_sessions.sync_cache()  # a fresh lease, just before
        started = time.monotonic()
        logout = await cut_off.client.post(
            "/api/v1/auth/logout", headers=_bearer(tokens["access_token"])
        )
        assert logout.status_code == 204
        lease = resources.settings.session_cache_lease_seconds
        assert time.monotonic() - started >= lease
        assert await _status(harness, tokens["access_token"]) == 401
    finally:
        resources.session_keeper.start()


async def _backlog_size(harness: AppHarness) -> int:
    async with harness.app.state.resources.engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM session_cache_backlog")))


async def test_the_lease_comes_back_only_once_the_backlog_is_in_redis(
    harness: AppHarness, make_harness: Callable[..., Any], redis_client: aioredis.Redis
) -> None:
    """A revocation whose tombstone Redis never took (the backlog) keeps the lease away until
    a keeper has written it, one batch per round, and then the revoked token is refused."""
    await harness.sign_up("backlog@example.com")
    tokens = await harness.login("backlog@example.com")
    assert await _status(harness, tokens["access_token"]) == 200  # cached as active
    sid = uuid.UUID(jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"])
    resources = harness.app.state.resources
    keys = resources.login_sessions._cache.keys
    await resources.session_keeper.stop()
    try:
        cut_off = await _worker_without_redis(make_harness)
        # The backlog revocations leave when Redis cannot take their tombstones: this
        # session's, and a full batch of others (their rows long gone: only tombstones matter).
        others = [uuid.uuid4() for _ in range(1000)]
        async with resources.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout' "
                    "WHERE id = :id"
                ),
                {"id": sid},
            )
            await connection.execute(
                text(
                    "INSERT INTO session_cache_backlog (session_id, revoked_at) VALUES (:id, now())"
                ),
                [{"id": session_id} for session_id in [sid, *others]],
            )
        await redis_client.delete(keys.lease)

        assert not await cut_off.app.state.resources.login_sessions.sync_cache()
        assert await _backlog_size(harness) == 1001
        assert not await redis_client.exists(keys.lease)

        sync = resources.login_sessions.sync_cache
        assert not await sync()  # one batch written, one row left
        assert await _backlog_size(harness) == 1
        assert not await redis_client.exists(keys.lease)
        assert await sync()
        assert await _backlog_size(harness) == 0
        assert await redis_client.exists(keys.lease)
        written = await redis_client.mget([keys.session(i) for i in [sid, *others]])
        assert set(written) == {b"r"}
        assert await _status(harness, tokens["access_token"]) == 401
    finally:
        resources.session_keeper.start()


async def test_the_active_sessions_count_leaves_out_revoked_and_expired(
    harness: AppHarness,
) -> None:
    await harness.sign_up("count@example.com")
    pairs = [await harness.login("count@example.com") for _ in range(4)]
    expired = jwt.decode(pairs[0]["access_token"], options={"verify_signature": False})["sid"]
    async with harness.app.state.resources.engine.begin() as connection:
        await connection.execute(
            text("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": expired},
        )
    assert (
        await harness.client.post("/api/v1/auth/logout", headers=_bearer(pairs[1]["access_token"]))
    ).status_code == 204
    assert await harness.app.state.resources.login_sessions.count_active() == 2


async def test_sessions_api_lists_and_revokes(
    harness: AppHarness, make_harness: Callable[..., Any]
) -> None:
    other = await _second_worker(make_harness)
    me = await harness.sign_up("many@example.com")
    phone = await harness.client.post(
        "/api/v1/auth/token",
        data={"username": "many@example.com", "password": PASSWORD},
        headers={"user-agent": "phone/1.0"},
    )
    laptop = await harness.client.post(
        "/api/v1/auth/token",
        data={"username": "many@example.com", "password": PASSWORD},
        headers={"user-agent": "laptop/2.0"},
    )
    phone_tokens, laptop_tokens = phone.json(), laptop.json()
    listed = await harness.client.get(
        "/api/v1/users/me/sessions", headers=_bearer(laptop_tokens["access_token"])
    )
    assert listed.status_code == 200
    sessions = listed.json()
    assert {s["user_agent"] for s in sessions} == {"phone/1.0", "laptop/2.0"}
    assert [s["user_agent"] for s in sessions if s["current"]] == ["laptop/2.0"]
    assert all(s["client_address"] for s in sessions)
    assert {"id", "created_at", "last_used_at"} <= sessions[0].keys()
    phone_id = next(s["id"] for s in sessions if s["user_agent"] == "phone/1.0")
    assert await _status(other, phone_tokens["access_token"]) == 200
    gone = await harness.client.delete(
        f"/api/v1/users/me/sessions/{phone_id}", headers=_bearer(laptop_tokens["access_token"])
    )
    assert gone.status_code == 204
    for worker in (harness, other):
        assert await _status(worker, phone_tokens["access_token"]) == 401
        assert (await _refresh(worker, phone_tokens["refresh_token"])).status_code == 401
    assert await _status(harness, laptop_tokens["access_token"]) == 200
    # Someone else's session, or none at all: not found, and nothing revoked.
    _, stranger = await harness.user_with_token("stranger@example.com")
    laptop_id = next(s["id"] for s in sessions if s["current"])
    for session_id in (laptop_id, str(uuid.uuid4())):
        missing = await harness.client.delete(
            f"/api/v1/users/me/sessions/{session_id}", headers=stranger
        )
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
    assert await _status(harness, laptop_tokens["access_token"]) == 200
    bad = await harness.client.delete("/api/v1/users/me/sessions/not-a-uuid", headers=stranger)
    assert bad.status_code == 422
    # Revoke-all is for admins only.
    denied = await harness.client.post(
        f"/api/v1/users/{me['id']}/sessions/revoke", headers=stranger
    )
    assert denied.status_code == 403
    await harness.sign_up("admin@example.com")
    await harness.make_admin("admin@example.com")
    admin = await harness.login("admin@example.com")
    revoked = await harness.client.post(
        f"/api/v1/users/{me['id']}/sessions/revoke", headers=_bearer(admin["access_token"])
    )
    assert revoked.status_code == 200 and revoked.json() == {"revoked": 1}
    for worker in (harness, other):
        assert await _status(worker, laptop_tokens["access_token"]) == 401
    assert await _status(harness, admin["access_token"]) == 200


async def test_purge_sessions_deletes_old_rows_in_batches(
    harness: AppHarness, database_url: str
) -> None:
    await harness.sign_up("old@example.com")
    pairs = [await harness.login("old@example.com") for _ in range(5)]
    sids = [
        jwt.decode(p["access_token"], options={"verify_signature": False})["sid"] for p in pairs
    ]
    async with harness.app.state.resources.engine.begin() as connection:
        # Two long expired, one revoked long ago, one revoked just now, one live.
        await connection.execute(
            text(
                "UPDATE sessions SET expires_at = now() - interval '30 days' WHERE id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": sids[:2]},
        )
        await connection.execute(
            text(
                "UPDATE sessions SET revoked_at = now() - interval '8 days', "
                "revoked_reason = 'logout' WHERE id = :id"
            ),
            {"id": sids[2]},
        )
    assert (
        await harness.client.post("/api/v1/auth/logout", headers=_bearer(pairs[3]["access_token"]))
    ).status_code == 204
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "purge-sessions", "--batch-size", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "deleted 3 " in done.stdout
    async with harness.app.state.resources.engine.connect() as connection:
        left = set(
            (await connection.execute(text("SELECT id::text FROM sessions"))).scalars().all()
        )
    assert left == set(sids[3:])
    assert await _status(harness, pairs[4]["access_token"]) == 200
    bad = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "purge-sessions", "--batch-size", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--batch-size" in bad.stderr


async def test_cached_sessions_keep_working_while_postgresql_is_unreachable(
    make_harness: Callable[..., Any], redis_client: aioredis.Redis
) -> None:
    # HS256: a worker started without its database has no asymmetric keys to verify with;
    # one that loaded them before the outage keeps them. The session side is what is shown.
    harness: AppHarness = await make_harness(JWT_ALGORITHM="HS256")
    await harness.sign_up("offline@example.com")
    tokens = await harness.login("offline@example.com")
    assert await _status(harness, tokens["access_token"]) == 200  # session and user cached
    resources = harness.app.state.resources
    await resources.session_keeper.stop()
    try:
        no_database: AppHarness = await make_harness(
            clean=False,
            JWT_ALGORITHM="HS256",
            DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing",
            DB_CONNECT_TIMEOUT=1,
        )
        lease = resources.login_sessions._cache.keys.lease
        await redis_client.delete(lease)
        # Only the worker without a database is left to keep the lease.
        for _ in range(50):
            if await redis_client.exists(lease):
                break
            await asyncio.sleep(0.1)
        assert await redis_client.exists(lease)
        assert await _status(no_database, tokens["access_token"]) == 200
    finally:
        resources.session_keeper.start()
