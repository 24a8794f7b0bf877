"""Development without PostgreSQL or Redis: the embedded SQLite database and in-process
stand-ins serve sign-up, login, refresh and the authenticated read."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from tests.support.app_harness import start_harness

ROOT = Path(__file__).resolve().parents[2]


async def test_embedded_mode_signs_up_logs_in_refreshes_and_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The embedded database file lives under the working directory.
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("ALEMBIC_CONFIG", str(ROOT / "alembic.ini"))
    # As a developer does: the schema first, with the service's own command.
    migrated = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "migrate"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    harness, stop = await start_harness(Settings(APP_ENV="development"))
    try:
        user, headers = await harness.user_with_token("embedded@example.com")
        read = await harness.client.get(f"/api/v1/users/{user['id']}", headers=headers)
        assert read.status_code == 200, read.text
        assert read.json()["email"] == "embedded@example.com"
        tokens = await harness.login("embedded@example.com")
        rotated = await harness.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert rotated.status_code == 200, rotated.text
        wrong = await harness.client.post(
            "/api/v1/auth/token",
            data={"username": "embedded@example.com", "password": "not-the-password"},
        )
        assert wrong.status_code == 401
    finally:
        await stop()
    assert (tmp_path / ".data" / "user-service.sqlite3").exists()
