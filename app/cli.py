"""Command line: `user-service serve | migrate | create-admin | check-config`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from app.settings import Settings


def _settings_or_exit() -> Settings:
    """Settings, or one line per bad field and exit status 2: never a stack trace."""
    try:
        return Settings()
    except ValidationError as error:
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"]) or "settings"
            print(f"configuration error: {field}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:
        print(f"configuration error: cannot read a secret file: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(_args: argparse.Namespace) -> int:
    _settings_or_exit()  # fail fast, in the master, with the field named
    config = os.environ.get("GUNICORN_CONFIG", "gunicorn.conf.py")
    if not Path(config).is_file():
        print(f"gunicorn config {config!r} not found (run from the project root)", file=sys.stderr)
        return 2
    gunicorn = Path(sys.executable).with_name("gunicorn")
    argv = [str(gunicorn), "--config", config, "app.main:create_app()"]
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process; signals go straight to gunicorn
    return 0


def migrate(_args: argparse.Namespace) -> int:
    from alembic import command

    from app.infra.schema import alembic_config

    _settings_or_exit()
    try:
        command.upgrade(alembic_config(), "head")
    except Exception as error:
        print(f"migration failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("database schema is at head")
    return 0


async def _create_admin(settings: Settings, email: str, password: str) -> str:
    from sqlalchemy import select

    from app.infra.database import create_engine, create_session_factory
    from app.models import User
    from app.services.passwords import PasswordService

    engine = create_engine(settings, pooled=False)
    try:
        async with create_session_factory(engine)() as session:
            user = await session.scalar(select(User).where(User.email == email.lower()))
            password_hash = await PasswordService(settings).hash(password)
            if user is None:
                session.add(User(email=email.lower(), password_hash=password_hash, is_admin=True))
                outcome = "created"
            else:
                user.is_admin, user.is_active, user.password_hash = True, True, password_hash
                outcome = "promoted"
            await session.commit()
            return outcome
    finally:
        await engine.dispose()


def create_admin(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    password = os.environ.get("ADMIN_PASSWORD", "")
    if len(password) < 8:
        print("ADMIN_PASSWORD must be set to at least 8 characters", file=sys.stderr)
        return 2
    outcome = asyncio.run(_create_admin(settings, args.email, password))
    print(f"admin {args.email} {outcome}")
    return 0


def check_config(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    print(f"configuration ok (environment={settings.app_env.value})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="user-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service under gunicorn").set_defaults(run=serve)
    commands.add_parser("migrate", help="upgrade the database schema to head").set_defaults(
        run=migrate
    )
    admin = commands.add_parser("create-admin", help="create or promote an admin (ADMIN_PASSWORD)")
    admin.add_argument("--email", required=True)
    admin.set_defaults(run=create_admin)
    commands.add_parser("check-config", help="validate the settings and exit").set_defaults(
        run=check_config
    )
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result
