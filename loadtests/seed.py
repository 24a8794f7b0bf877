"""Seed test data through the public API: sign up N users, log some in, write the seed file.

    python -m loadtests.seed --host http://127.0.0.1:8000 --users 200 --logins 50 --out seed.json

The admin account cannot be created through the API (by design); pass its credentials with
--admin-email and LOADTEST_ADMIN_PASSWORD, or let --create-admin run
`user-service create-admin` locally (needs DATABASE_URL). Without an admin the admin journey
is skipped. Logins answered 429 are retried after Retry-After, so seeding also works against
a deployment that keeps the per-IP login limit low; it is only slower there.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API = "/api/v1"


class SeedError(RuntimeError):
    pass


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def request(
    host: str,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> Reply:
    headers = {"Accept": "application/json"}
    data: bytes | None = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(host.rstrip("/") + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, hdrs = exc.read(), exc.code, dict(exc.headers)
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return Reply(status, body, hdrs)


def wait_ready(host: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = request(host, "GET", "/readyz", timeout=2.0)
            if reply.status == 200:
                return
            last = f"/readyz answered {reply.status}: {reply.body}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SeedError(f"{host} not ready after {timeout:.0f}s ({last})")


def sign_up(host: str, email: str, password: str) -> dict[str, Any]:
    reply = request(
        host,
        "POST",
        f"{API}/users",
        json_body={"email": email, "password": password, "full_name": "Load Test"},
    )
    if reply.status != 201:
        raise SeedError(f"sign-up of {email} answered {reply.status}: {reply.body}")
    return {"id": str(reply.body["id"]), "email": email}


def log_in(host: str, email: str, password: str, patience: float = 300.0) -> dict[str, str]:
    deadline = time.monotonic() + patience
    while True:
        reply = request(
            host, "POST", f"{API}/auth/token", form={"username": email, "password": password}
        )
        if reply.status == 200:
            return {
                "access_token": reply.body["access_token"],
                "refresh_token": reply.body["refresh_token"],
            }
        if reply.status == 429 and time.monotonic() < deadline:
            time.sleep(float(reply.headers.get("Retry-After", "1")))
            continue
        raise SeedError(f"login of {email} answered {reply.status}: {reply.body}")


def create_admin(email: str, password: str, env: dict[str, str] | None = None) -> None:
    """Run the service's own command; it needs DATABASE_URL for the target database."""
    command = shutil.which("user-service") or str(Path(sys.executable).parent / "user-service")
    result = subprocess.run(
        [command, "create-admin", "--email", email],
        env={**os.environ, **(env or {}), "ADMIN_PASSWORD": password},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise SeedError(f"create-admin failed ({result.returncode}): {result.stderr.strip()}")


def seed(
    host: str,
    users: int,
    logins: int,
    *,
    hot: int = 10,
    concurrency: int = 4,
    admin_email: str | None = None,
    admin_password: str | None = None,
) -> dict[str, Any]:
    """Sign up `users` accounts and log in the first `logins` of them, in parallel."""
    run_id = secrets.token_hex(4)  # reruns against the same database never collide
    password = f"Lt-{secrets.token_urlsafe(12)}"
    emails = [f"load-{run_id}-{i}@example.com" for i in range(users)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        accounts = list(pool.map(lambda e: sign_up(host, e, password), emails))
        pairs = list(pool.map(lambda a: log_in(host, a["email"], password), accounts[:logins]))
    for account, pair in zip(accounts, pairs, strict=False):
        account.update(pair)
    admin: dict[str, Any] | None = None
    if admin_email and admin_password:
        admin = {
            "email": admin_email,
            "password": admin_password,
            **log_in(host, admin_email, admin_password),
        }
    return {
        "password": password,
        "users": accounts,
        "hot_ids": [a["id"] for a in accounts[:hot]],
        "admin": admin,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--logins", type=int, default=50, help="token pairs to obtain")
    parser.add_argument("--hot", type=int, default=10, help="size of the hot read set")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--admin-email")
    parser.add_argument(
        "--create-admin",
        action="store_true",
        help="run `user-service create-admin` first (needs DATABASE_URL)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    admin_password = os.environ.get("LOADTEST_ADMIN_PASSWORD")
    try:
        wait_ready(args.host)
        if args.create_admin and args.admin_email:
            admin_password = admin_password or secrets.token_urlsafe(16)
            create_admin(args.admin_email, admin_password)
        data = seed(
            args.host,
            args.users,
            args.logins,
            hot=args.hot,
            concurrency=args.concurrency,
            admin_email=args.admin_email,
            admin_password=admin_password,
        )
    except SeedError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data), encoding="utf-8")
    print(f"seeded {len(data['users'])} users ({args.logins} logged in) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
