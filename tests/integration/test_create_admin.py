"""The create-admin command against the real database: made, promoted, raced, refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from loadtests.local_service import free_port
from tests.support.app_harness import PASSWORD, AppHarness
from tests.support.database import committed_under


def _create_admin(
    email: str, database_url: str, redis_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APP_ENV": "test", "DATABASE_URL": database_url}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "app", "create-admin", "--email", email],
        env={**env, "ADMIN_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_admin_made_on_the_command_line_logs_in_as_typed(
    harness: AppHarness, database_url: str
) -> None:
    typed = "Ada\u0301m@Example.COM"
    made = await asyncio.to_thread(_create_admin, typed, database_url)
    assert made.returncode == 0, made.stderr
    tokens = await harness.login(typed)
    me = await harness.client.get("/api/v1/users/me", headers=_bearer(tokens["access_token"]))
    assert me.json()["is_admin"] is True
    refused = await asyncio.to_thread(_create_admin, "not an address", database_url)
    assert refused.returncode == 2 and "--email" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_an_address_signed_up_meanwhile_is_promoted_not_a_crash(
    harness: AppHarness, database_url: str
) -> None:
    """A sign-up of the same address commits between the command's look-up and its write:
    the command promotes that user instead of failing on the unique address."""
    email = "raced-admin@example.com"
    # The command waits on the uncommitted row's unique-index entry before it commits.
    result = await committed_under(
        database_url,
        "INSERT INTO users (id, email, password_hash) VALUES (gen_random_uuid(), $1, 'x')",
        email,
        racing=lambda: asyncio.to_thread(_create_admin, email, database_url),
        describe=lambda completed: completed.stderr,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"admin {email} promoted"
    tokens = await harness.login(email)
    me = await harness.client.get("/api/v1/users/me", headers=_bearer(tokens["access_token"]))
    assert me.json()["is_admin"] is True and me.json()["is_active"] is True


async def test_a_promoted_user_reads_as_an_admin_at_once(
    harness: AppHarness, database_url: str
) -> None:
    """A user's account is cached by reads: the promotion drops that entry, so the next read
    shows the admin, not what the cache held until it expires."""
    email = "promoted-reader@example.com"
    user, headers = await harness.user_with_token(email)
    path = f"/api/v1/users/{user['id']}"
    for _ in range(2):  # a miss, then a hit
        read = await harness.client.get(path, headers=headers)
        assert read.status_code == 200 and read.json()["is_admin"] is False
    settings = harness.app.state.resources.settings
    assert settings.redis_url is not None
    redis_url = settings.redis_url.get_secret_value()
    made = await asyncio.to_thread(_create_admin, email, database_url, redis_url)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"admin {email} promoted"
    read = await harness.client.get(path, headers=headers)
    assert read.status_code == 200 and read.json()["is_admin"] is True


def test_an_unreachable_database_is_a_clear_error() -> None:
    unreachable = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"
    result = _create_admin("someone@example.com", unreachable)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("create-admin failed: database unreachable"), result.stderr
