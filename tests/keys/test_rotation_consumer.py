"""A full key rotation seen by another microservice and by two replicas on one database.

The consumer knows only the discovery URL and verifies offline with PyJWT's PyJWKClient,
its JWK Set cached for exactly the max-age the service announces and never refetched early
for an unknown kid: any key that signs before every cache could hold it shows up as a
rejected valid token. Meanwhile `user-service keys rotate` runs as the CronJob would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from tests.support.database import REPO, fresh_database
from tests.support.isolation import redis_url
from tests.support.service import RunningService, running_service

MAX_AGE = 3
RELOAD = 0.5
ACCESS_TTL = 30
REFRESH_TTL = 60
OVERLAP = MAX_AGE + max(ACCESS_TTL, REFRESH_TTL)
PASSWORD = "rotation-password-0123"


@dataclass
class Issued:
    instance: str
    at: float
    token: str
    kid: str
    expires: int


@dataclass
class Recording:
    issued: list[Issued] = field(default_factory=list)
    verified: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    # Every JWK Set fetched from any instance: when it arrived, and the kids it held.
    fetches: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    published: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    rotate_output: list[str] = field(default_factory=list)
    activated_at: float = 0.0
    old_kid: str = ""
    new_kid: str = ""
    after_deletion: dict[str, Any] = field(default_factory=dict)
    status: list[dict[str, str]] = field(default_factory=list)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "keys", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _published(service: RunningService) -> set[str]:
    response = httpx.get(f"{service.base_url}/.well-known/jwks.json", timeout=5)
    assert response.status_code == 200
    assert response.headers["cache-control"] == f"public, max-age={MAX_AGE}"
    return {key["kid"] for key in response.json()["keys"]}


def _login(service: RunningService, email: str) -> dict[str, Any]:
    response = httpx.post(
        f"{service.base_url}/api/v1/auth/token",
        data={"username": email, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def rotation() -> Iterator[Recording]:
    database = fresh_database(f"keys_rotation_{uuid.uuid4().hex[:6]}")
    env = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_url(8),
        "CACHE_KEY_PREFIX": f"rot{uuid.uuid4().hex[:6]}",
        "JWKS_MAX_AGE_SECONDS": str(MAX_AGE),
        "SIGNING_KEY_REFRESH_SECONDS": str(RELOAD),
        "ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TTL),
        "REFRESH_TOKEN_TTL_SECONDS": str(REFRESH_TTL),
        "RATE_LIMIT_LOGIN": "100000/minute",
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    record = Recording()
    with ExitStack() as stack:
        services = {
            "a": stack.enter_context(running_service(env, workers=2)),
            "b": stack.enter_context(running_service(env, workers=1)),
        }
        email = f"rot-{uuid.uuid4().hex[:8]}@example.com"
        signup = httpx.post(
            f"{services['a'].base_url}/api/v1/users",
            json={"email": email, "password": PASSWORD},
            timeout=10,
        )
        assert signup.status_code == 201, signup.text
        # The consumer: the discovery URL is all it is told.
        discovery = httpx.get(
            f"{services['a'].base_url}/.well-known/oauth-authorization-server", timeout=5
        ).json()
        consumer = jwt.PyJWKClient(
            discovery["jwks_uri"], cache_jwk_set=True, lifespan=MAX_AGE, cooldown_duration=10**6
        )

        def verify_alive(now: float) -> None:
            for issued in record.issued:
                if issued.expires - 1 <= now:
                    continue
                try:
                    key = consumer.get_signing_key_from_jwt(issued.token)
                    jwt.decode(
                        issued.token,
                        key.key,
                        algorithms=[key.algorithm_name],
                        audience="user-service",
                        issuer=discovery["issuer"],
                    )
                    record.verified += 1
                except (jwt.PyJWKClientError, jwt.InvalidTokenError) as error:
                    record.rejected.append((issued.kid, repr(error)))

        polling = threading.Event()

        def poll_jwks() -> None:
            # Any consumer may fetch the JWK Set at any moment: sample it often, from every
            # instance, so a key that signs too soon after it appeared cannot slip between.
            while not polling.is_set():
                for service in services.values():
                    kids = frozenset(_published(service))
                    record.fetches.append((time.time(), kids))
                time.sleep(0.05)

        poller = threading.Thread(target=poll_jwks, name="jwks-poller", daemon=True)
        poller.start()
        stack.callback(poller.join, 10)
        stack.callback(polling.set)

        def tick(turn: int) -> None:
            for name, service in services.items():
                for kid in _published(service):
                    record.published.setdefault(name, {}).setdefault(kid, set())
            name = "a" if turn % 2 == 0 else "b"
            token = _login(services[name], email)["access_token"]
            claims = jwt.decode(token, options={"verify_signature": False})
            kid = jwt.get_unverified_header(token)["kid"]
            record.issued.append(Issued(name, time.time(), token, kid, int(claims["exp"])))
            verify_alive(time.time())

        turn = 0
        start = time.time()
        while time.time() - start < 2:
            tick(turn := turn + 1)
            time.sleep(0.25)
        first = _cli(env, "rotate")
        assert first.returncode == 0, first.stderr
        record.rotate_output.append(first.stdout)
        record.old_kid = record.issued[-1].kid
        while not record.activated_at:
            tick(turn := turn + 1)
            time.sleep(0.25)
            result = _cli(env, "rotate")
            assert result.returncode == 0, result.stderr
            record.rotate_output.append(result.stdout)
            if "activated" in result.stdout:
                record.activated_at = time.time()
            assert time.time() - start < 60, record.rotate_output
        # Keep going until the old key's deletion has passed and every cache has seen it.
        while time.time() < record.activated_at + OVERLAP + MAX_AGE + 1:
            tick(turn := turn + 1)
            time.sleep(0.4)
        record.new_kid = record.issued[-1].kid
        old_token = next(i.token for i in record.issued if i.kid == record.old_kid)
        record.after_deletion = {
            "published": {name: _published(service) for name, service in services.items()},
        }
        try:
            consumer.get_signing_key_from_jwt(old_token)
            record.after_deletion["consumer"] = "accepted"
        except jwt.PyJWKClientError as error:
            record.after_deletion["consumer"] = repr(error)
        status = _cli(env, "status", "--json")
        assert status.returncode == 0, status.stderr
        record.status = json.loads(status.stdout)
        record.after_deletion["metrics"] = _scrape_until(
            services["a"],
            ["user_service_signing_key_next_present 1.0", 'jwks_requests_total{result="ok"}'],
        )
        yield record


def _scrape_until(service: RunningService, lines: list[str], timeout: float = 10) -> str:
    """A scrape showing every one of `lines`, or the last one after `timeout`: the worker
    that answers reads the other's samples as that one last flushed them (each second)."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{service.metrics_base_url}/metrics", timeout=5).text
        if all(line in text for line in lines) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_the_consumer_never_rejected_a_valid_token(rotation: Recording) -> None:
    assert rotation.rejected == []
    kids = {issued.kid for issued in rotation.issued}
    assert kids == {rotation.old_kid, rotation.new_kid} and rotation.old_kid != rotation.new_kid
    assert rotation.verified > 500


def test_both_instances_sign_with_the_new_key_once_it_is_active(rotation: Recording) -> None:
    settled = rotation.activated_at + RELOAD + 0.5
    for instance in ("a", "b"):
        before = [
            i.kid
            for i in rotation.issued
            if i.instance == instance and i.at < rotation.activated_at - 1
        ]
        after = [i.kid for i in rotation.issued if i.instance == instance and i.at > settled]
        assert before and set(before) == {rotation.old_kid}, instance
        assert after and set(after) == {rotation.new_kid}, instance


def test_no_key_signs_before_it_was_published_for_max_age(rotation: Recording) -> None:
    """A consumer that fetched the JWK Set just before the new key appeared in it holds that
    set for max-age: the key must not sign before that copy expires."""
    first_token = min(i.at for i in rotation.issued if i.kid == rotation.new_kid)
    without = [at for at, kids in rotation.fetches if rotation.new_kid not in kids]
    with_key = [at for at, kids in rotation.fetches if rotation.new_kid in kids]
    assert with_key and min(with_key) < first_token, "the poller never saw the new key"
    last_without = max(at for at in without if at < first_token)
    assert first_token - last_without >= MAX_AGE, (first_token - last_without, len(without))


def test_a_deleted_key_is_unpublished_and_refused(rotation: Recording) -> None:
    for name, kids in rotation.after_deletion["published"].items():
        assert rotation.old_kid not in kids, name
        assert rotation.new_kid in kids, name
    assert "Unable to find a signing key" in rotation.after_deletion["consumer"]
    states = {row["kid"]: row["state"] for row in rotation.status}
    assert states[rotation.old_kid] == "deleted"
    assert states[rotation.new_kid] == "active"
    assert sorted(states.values()) == ["active", "deleted", "next"]
    metrics = rotation.after_deletion["metrics"]
    assert "user_service_signing_key_next_present 1.0" in metrics
    assert 'user_service_jwks_requests_total{result="ok"}' in metrics
