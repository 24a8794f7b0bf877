"""Whether the database schema is at the revision this build's migrations end at."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


def alembic_config() -> Config:
    """alembic.ini from ALEMBIC_CONFIG or the working directory (the image's WORKDIR)."""
    path = Path(os.environ.get("ALEMBIC_CONFIG", "alembic.ini"))
    config = Config(str(path))
    config.set_main_option("script_location", str(path.resolve().parent / "migrations"))
    return config


@dataclass(frozen=True, slots=True)
class ShippedMigrations:
    head: str
    known: frozenset[str]

    def state_of(self, revision: str | None) -> str:
        """current, behind (migrations pending), or ahead (a newer release migrated already,
        which old pods must tolerate during a rolling upgrade)."""
        if revision == self.head:
            return "current"
        if revision is not None and revision not in self.known:
            return "ahead"
        return "behind"


def shipped_migrations() -> ShippedMigrations | None:
    """The migrations this build ships, or None when they are not present beside it."""
    try:
        script = ScriptDirectory.from_config(alembic_config())
        head = script.get_current_head()
        known = frozenset(rev.revision for rev in script.walk_revisions())
    except Exception:
        return None
    return ShippedMigrations(head, known) if head else None


async def current_revision(connection: AsyncConnection) -> str | None:
    try:
        result = await connection.execute(text("SELECT version_num FROM alembic_version"))
    except Exception:
        return None
    return result.scalar_one_or_none()
