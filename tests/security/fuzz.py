"""Schemathesis against the real service from its /openapi.json (short in pytest, long in
scripts/fuzz.sh): no 5xx, and every response conforms to the schema.

    python -m tests.security.fuzz --max-examples 500 --seed 7 [--max-time 1800]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import jwt

from tests.security.conftest import clear_prefix
from tests.support.database import ADMIN_DSN, async_url, drop_database, fresh_database
from tests.support.isolation import database_name, redis_url
from tests.support.service import REPO, running_service

REDIS_URL = os.environ.get("SECURITY_REDIS_URL") or redis_url(6)
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
# Logout would revoke the very token the run authenticates with; it is exercised by
# tests/integration/test_auth.py and tests/security/test_logs.py instead.
EXCLUDED_PATHS = ["/api/v1/auth/logout"]
# Introspection (RFC 7662) authenticates a service client with HTTP Basic, not the admin's
# bearer token: the run configures one client and sends its credentials to that operation, so
# it is fuzzed past its 401.
CLIENT_ID, CLIENT_SECRET = "fuzz-client", "fuzz-client-secret-0123456789"
CLIENT_OPERATION = "^/api/v1/auth/introspect$"


def _client_config(directory: Path) -> Path:
    """A schemathesis config whose client operation sends the client's credentials (an
    operation's headers take the place of the run's --header for that operation)."""
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    config = directory / "schemathesis.toml"
    config.write_text(
        f"[[operations]]\ninclude-path-regex = {json.dumps(CLIENT_OPERATION)}\n"
        f'headers = {{ Authorization = "Basic {basic}" }}\n',
        encoding="utf-8",
    )
    return config


@dataclass
class FuzzResult:
    returncode: int
    output: str
    log: str


def _admin_token(base_url: str, database: str) -> str:
    email = f"fuzz-admin-{uuid.uuid4().hex[:8]}@security.example.com"
    password = "fuzz-admin-password"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        created = client.post("/api/v1/users", json={"email": email, "password": password})
        created.raise_for_status()

        async def promote() -> None:
            connection = await asyncpg.connect(
                f"{ADMIN_DSN.rsplit('/', 1)[0]}/{database_name(database)}"
            )
            try:
                await connection.execute("UPDATE users SET is_admin = true WHERE email = $1", email)
            finally:
                await connection.close()

        asyncio.run(promote())
        response = client.post("/api/v1/auth/token", data={"username": email, "password": password})
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


def _hooks_env(token: str) -> dict[str, str]:
    """The environment that loads tests/security/fuzz_hooks.py into `st`, naming the admin
    (and its session) that no generated request may revoke, delete or edit."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.security.fuzz_hooks",
        "FUZZ_ADMIN_ID": claims["sub"],
        "FUZZ_ADMIN_SESSION": claims["sid"],
    }


def run_fuzz(
    *,
    max_examples: int,
    seed: int,
    max_time: int | None = None,
    workers: int = 2,
    report_dir: Path | None = None,
    database: str = "user_service_sec_fuzz",
    shrink: bool = True,
    phases: str | None = None,
) -> FuzzResult:
    fresh_database(database)
    prefix = f"sec-fuzz-{uuid.uuid4().hex[:6]}"
    env = {
        "DATABASE_URL": async_url(database),
        "REDIS_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": prefix,
        "JWT_SECRET_KEY": "fuzz-jwt-key-0123456789abcdef0123456789abcdef",
        "DB_POOL_SIZE": "3",
        "DB_MAX_OVERFLOW": "2",
        # Fuzzing is not an attack on the limiter: keep it out of the way.
        "RATE_LIMIT_LOGIN": "1000000/minute",
        "RATE_LIMIT_API": "1000000/minute",
        "OTEL_SDK_DISABLED": "true",
        "INTROSPECTION_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}",
    }
    try:
        with running_service(env) as service, tempfile.TemporaryDirectory() as scratch:
            token = _admin_token(service.base_url, database)
            command = [
                str(Path(sys.executable).with_name("st")),
                "--config-file",
                str(_client_config(Path(scratch))),
                "run",
                f"{service.base_url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                str(max_examples),
                "--seed",
                str(seed),
                "--workers",
                str(workers),
                "--header",
                f"Authorization: Bearer {token}",
                "--request-timeout",
                "10",
                "--no-color",
                "--suppress-health-check",
                "all",
            ]
            if phases:
                command += ["--phases", phases]
            if not shrink:
                # Shrinking a failure can take minutes; the short run reports it unshrunk.
                command.append("--no-shrink")
            for path in EXCLUDED_PATHS:
                command += ["--exclude-path", path]
            if max_time:
                command += ["--max-time", str(max_time)]
            if report_dir is not None:
                report_dir.mkdir(parents=True, exist_ok=True)
                command += ["--report", "junit,har", "--report-dir", str(report_dir)]
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=(max_time or 600) + 120,
                env=_hooks_env(token),
            )
            return FuzzResult(
                completed.returncode, completed.stdout + completed.stderr, service.logs()
            )
    finally:
        drop_database(database)
        clear_prefix(prefix)


def statuses(log: str, method: str, route: str) -> Counter[int]:
    """How the service answered `method` `route` in its JSON access log."""
    answered: Counter[int] = Counter()
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "request" and (entry.get("method"), entry.get("route")) == (
            method,
            route,
        ):
            answered[entry["status"]] += 1
    return answered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    parser.add_argument("--max-time", type=int, default=1800)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-dir", type=Path, default=Path("reports/fuzz"))
    args = parser.parse_args()
    print(f"schemathesis: seed {args.seed}, {args.max_examples} examples per operation", flush=True)
    result = run_fuzz(
        max_examples=args.max_examples,
        seed=args.seed,
        max_time=args.max_time,
        workers=args.workers,
        report_dir=args.report_dir,
    )
    print(result.output)
    if result.returncode != 0:
        errors = [line for line in result.log.splitlines() if '"level":"error"' in line]
        print(f"service errors logged: {len(errors)}")
        for line in errors[:20]:
            print(line[:500])
    print(f"re-run this exact fuzz: FUZZ_SEED={args.seed} scripts/fuzz.sh")
    print(f"reports in {args.report_dir}")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
