"""The migrations build exactly the schema the ORM models describe, and step back down."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Base
from tests.support.database import REPO, drop_database, fresh_database


def test_migrated_schema_matches_the_models() -> None:
    url = fresh_database("user_service_migrations")

    async def diff() -> tuple[list[object], set[str]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:

                def compare(sync_connection: object) -> tuple[list[object], set[str]]:
                    context = MigrationContext.configure(
                        sync_connection,  # type: ignore[arg-type]
                        opts={"compare_type": True},
                    )
                    tables = set(inspect(sync_connection).get_table_names())  # type: ignore[arg-type]
                    return compare_metadata(context, Base.metadata), tables

                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    differences, tables = asyncio.run(diff())
    assert {"sessions", "session_cache_backlog", "login_throttle"} <= tables
    assert differences == []
    env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "test"}
    down = subprocess.run(
        [sys.executable, "-m", "alembic", "downgrade", "0001"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    drop_database("user_service_migrations")
