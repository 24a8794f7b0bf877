"""Command line: `user-service serve | migrate | create-admin | check-config | keys`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

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
    from app.infra.cache import UserCache
    from app.infra.database import create_engine, create_session_factory
    from app.infra.redis import create_redis, redis_configured
    from app.services.admins import create_or_promote_admin
    from app.services.passwords import PasswordService

    engine = create_engine(settings, pooled=False)
    passwords = PasswordService(settings)
    # The service's Redis, to drop a promoted user's cached account; without one (embedded
    # development mode) the cache lives in the service's own process and expires there.
    redis = create_redis(settings) if redis_configured(settings) else None
    try:
        sessions = create_session_factory(engine)
        cache = UserCache(redis, settings) if redis is not None else None
        return await create_or_promote_admin(sessions, passwords, email, password, cache)
    finally:
        passwords.close()
        await engine.dispose()
        if redis is not None:
            await redis.close()


def create_admin(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    password = os.environ.get("ADMIN_PASSWORD", "")
    if len(password) < 8:
        print("ADMIN_PASSWORD must be set to at least 8 characters", file=sys.stderr)
        return 2
    from app.schemas.user import normalize_email

    try:
        # Stored in the form sign-up and login use, or the admin could never log in.
        email = normalize_email(args.email)
    except ValueError as error:
        print(f"--email: {error}", file=sys.stderr)
        return 2
    from app.services.admins import AdminCommandError

    try:
        outcome = asyncio.run(_create_admin(settings, email, password))
    except AdminCommandError as error:
        print(f"create-admin failed: {error}", file=sys.stderr)
        return 1
    print(f"admin {email} {outcome}")
    return 0


def check_config(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    print(f"configuration ok (environment={settings.app_env.value})")
    return 0


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from app.infra.database import create_engine, create_session_factory
    from app.services.keys import key_manager
    from app.services.signing_keys import KeyLifecycleError

    if settings.jwt_algorithm == "HS256":
        print(
            "JWT_ALGORITHM=HS256 signs with JWT_SECRET_KEY: there are no keys to manage",
            file=sys.stderr,
        )
        return 2
    engine = create_engine(settings, pooled=False)
    manager = key_manager(settings, create_session_factory(engine))
    try:
        if args.action == "status":
            return _print_status(await manager.status(), as_json=args.json)
        lines = (
            await manager.rotate()
            if args.action == "rotate"
            else await manager.retire(args.kid, force=args.force)
        )
        for line in lines:
            print(line)
        return 0
    except KeyLifecycleError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


def _print_status(keys: list[Any], *, as_json: bool) -> int:
    from app.infra.key_store import from_epoch

    def iso(seconds: float | None) -> str:
        return from_epoch(seconds).isoformat(timespec="seconds") if seconds else "-"

    rows = [
        {
            "kid": key.kid,
            "algorithm": key.algorithm,
            "state": key.state.value,
            "published_at": iso(key.times.published_at),
            "activated_at": iso(key.times.activated_at),
            "retired_at": iso(key.times.retired_at),
            "deleted_at": iso(key.times.deleted_at),
            "may_sign_from": iso(key.ready_at),
        }
        for key in keys
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'kid':44} {'alg':6} {'state':8} {'published':26} {'activated':26} until")
        for row in rows:
            until = (
                row["deleted_at"]
                if row["state"] != "next"
                else "signs from " + row["may_sign_from"]
            )
            print(
                f"{row['kid']:44} {row['algorithm']:6} {row['state']:8} "
                f"{row['published_at']:26} {row['activated_at']:26} {until}"
            )
    # No active key means logins fail: a monitoring job can act on the exit status.
    return 0 if any(row["state"] == "active" for row in rows) else 3


def keys(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    try:
        return asyncio.run(_keys(settings, args))
    except OSError as error:
        print(f"database unreachable: {error}", file=sys.stderr)
        return 1


def _add_keys_parser(commands: Any) -> None:
    parser = commands.add_parser("keys", help="signing keys: status, rotate, retire")
    parser.set_defaults(run=keys)
    actions = parser.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="every key, its state and its times")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    actions.add_parser(
        "rotate",
        help="activate the next key once it has been published long enough, publish a new one",
    )
    retire = actions.add_parser("retire", help="retire (or withdraw) one key")
    retire.add_argument("kid")
    retire.add_argument(
        "--force",
        action="store_true",
        help="compromised key: delete it now and sign with a new key at once",
    )


async def _purge_sessions(settings: Settings, batch_size: int, retain_days: float) -> int:
    from datetime import timedelta

    from app.infra.database import create_engine, create_session_factory
    from app.services.sessions import purge_expired_sessions

    engine = create_engine(settings, pooled=False)
    try:
        return await purge_expired_sessions(
            create_session_factory(engine),
            batch_size=batch_size,
            retain=timedelta(days=retain_days),
        )
    finally:
        await engine.dispose()


def purge_sessions(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    if args.batch_size < 1 or args.retain_days < 0:
        print("--batch-size must be >= 1 and --retain-days >= 0", file=sys.stderr)
        return 2
    try:
        deleted = asyncio.run(_purge_sessions(settings, args.batch_size, args.retain_days))
    except OSError as error:
        print(f"database unreachable: {error}", file=sys.stderr)
        return 1
    print(f"deleted {deleted} expired or revoked sessions")
    return 0


def _add_purge_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "purge-sessions", help="delete expired and revoked session rows in batches"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per transaction")
    parser.add_argument(
        "--retain-days",
        type=float,
        default=7,
        help="keep rows this long after they expired or were revoked (for the audit trail)",
    )
    parser.set_defaults(run=purge_sessions)


_RETIRE_OPTIONS = frozenset({"--force", "-h", "--help"})


def _kid_after_options(argv: list[str]) -> list[str]:
    """`keys retire KID` with KID after a `--`: a kid is base64url and may begin with "-",
    which argparse would otherwise take for an unknown option (or for -h)."""
    if argv[:2] != ["keys", "retire"] or "--" in argv:
        return argv
    rest = argv[2:]
    options = [arg for arg in rest if arg in _RETIRE_OPTIONS]
    return [*argv[:2], *options, "--", *(arg for arg in rest if arg not in _RETIRE_OPTIONS)]


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
    _add_keys_parser(commands)
    _add_purge_parser(commands)
    args = parser.parse_args(_kid_after_options(sys.argv[1:] if argv is None else argv))
    result: int = args.run(args)
    return result
