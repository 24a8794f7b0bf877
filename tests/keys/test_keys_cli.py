"""`user-service keys status|rotate|retire` on a real database, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.database import REPO, fresh_database
from tests.support.service import free_port


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return {"APP_ENV": "test", "DATABASE_URL": fresh_database("keys_cli")}


def _keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "keys", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _states(env: dict[str, str]) -> dict[str, str]:
    result = _keys(env, "status", "--json")
    return {row["kid"]: row["state"] for row in json.loads(result.stdout)}


def test_the_lifecycle_from_the_command_line(env: dict[str, str]) -> None:
    empty = _keys(env, "status")
    assert empty.returncode == 3 and "kid" in empty.stdout  # no active key: logins would fail

    first = _keys(env, "rotate")
    assert first.returncode == 0, first.stderr
    assert "no key existed" in first.stdout and "published next key" in first.stdout
    states = _states(env)
    [active] = [kid for kid, state in states.items() if state == "active"]
    [upcoming] = [kid for kid, state in states.items() if state == "next"]

    early = _keys(env, "rotate")
    assert early.returncode == 0 and "nothing to activate yet" in early.stdout
    assert _states(env) == states

    refused = _keys(env, "retire", active)
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr

    withdrawn = _keys(env, "retire", upcoming)
    assert withdrawn.returncode == 0 and "withdrew" in withdrawn.stdout
    assert _states(env)[upcoming] == "deleted"

    forced = _keys(env, "retire", active, "--force")
    assert forced.returncode == 0 and "compromised" in forced.stdout
    states = _states(env)
    assert states[active] == "deleted"
    assert sorted(states.values()) == ["active", "deleted", "deleted"]

    unknown = _keys(env, "retire", "no-such-kid")
    assert unknown.returncode == 1 and "no signing key no-such-kid" in unknown.stderr


def test_a_kid_may_begin_with_a_dash(env: dict[str, str]) -> None:
    # A kid is base64url (RFC 7638 thumbprint): one in 64 begins with "-", which a parser
    # would take for an option. Unknown kids give the usual error, so the kid was read.
    for args in (["-VvaVCf1a7K"], ["-hX1"], ["--force", "-VvaVCf1a7K"], ["-VvaVCf1a7K", "--force"]):
        kid = next(arg for arg in args if arg != "--force")
        result = _keys(env, "retire", *args)
        assert result.returncode == 1, result.stderr
        assert f"no signing key {kid}" in result.stderr


def test_errors_are_one_clear_line(env: dict[str, str]) -> None:
    hmac = _keys({**env, "JWT_ALGORITHM": "HS256"}, "status")
    assert hmac.returncode == 2 and "no keys to manage" in hmac.stderr
    gone = _keys(
        {**env, "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"},
        "status",
    )
    assert gone.returncode == 1 and "database unreachable" in gone.stderr
    assert "Traceback" not in gone.stderr
    bad = _keys({**env, "SIGNING_KEY_OVERLAP_SECONDS": "10"}, "rotate")
    assert bad.returncode == 2 and "SIGNING_KEY_OVERLAP_SECONDS" in bad.stderr


def test_rotate_refuses_a_different_key_encryption_key(env: dict[str, str]) -> None:
    """A CronJob with the wrong KEK would publish keys no replica can decrypt."""
    assert _keys(env, "rotate").returncode == 0
    before = _keys(env, "status", "--json").stdout
    other = {**env, "SIGNING_KEY_ENCRYPTION_KEY": "another-key-encryption-key-0123456789abc"}
    refused = _keys(other, "rotate")
    assert refused.returncode == 1 and "SIGNING_KEY_ENCRYPTION_KEY" in refused.stderr
    assert _keys(env, "status", "--json").stdout == before
