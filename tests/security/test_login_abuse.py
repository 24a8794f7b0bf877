"""Password guessing against the real service: the login limit holds across workers, and an
unknown email costs the same time as a wrong password (real Argon2 costs)."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

import httpx

from tests.security.conftest import PASSWORD, Api

LOGIN = "/api/v1/auth/token"


def _login(client: httpx.Client, email: str, password: str, source: str) -> httpx.Response:
    # Each test speaks for its own client address (the service trusts X-Forwarded-For from
    # 127.0.0.1, as behind an ingress), so the tests do not share one login budget.
    return client.post(
        LOGIN,
        data={"username": email, "password": password},
        headers={"X-Forwarded-For": source, "Connection": "close"},
    )


def test_password_brute_force_hits_429_across_workers(
    auth_api: Api, attack_report: Callable[..., None]
) -> None:
    user = auth_api.sign_up()
    source = "198.51.100.7"
    statuses = []
    for attempt in range(8):
        # Varying the email does not reset the budget: it is per client, not per account.
        email = user["email"] if attempt % 2 else f"other-{attempt}@security.example.com"
        statuses.append(_login(auth_api.client, email, f"guess-{attempt:04d}", source).status_code)
    assert statuses[:5] == [401] * 5, statuses
    assert statuses[5:] == [429] * 3, statuses
    blocked = _login(auth_api.client, user["email"], PASSWORD, source)
    # Even the right password is refused while the client is over its budget.
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert blocked.headers["ratelimit-remaining"] == "0"
    assert blocked.headers["content-type"] == "application/problem+json"
    # Another client is not affected.
    assert _login(auth_api.client, user["email"], PASSWORD, "198.51.100.8").status_code == 200
    attack_report(
        fault="Password brute force (limit 5/minute per client)",
        requests_sent=len(statuses) + 2,
        requests_failed=0,
        failures_expected="401 x5, then 429 (even for the right password)",
        rows_checked=0,
        recovery_seconds=None,
        notes=f"statuses {statuses}; Retry-After {blocked.headers['retry-after']}s",
    )


def test_unknown_email_and_wrong_password_take_the_same_time(
    auth_api: Api, attack_report: Callable[..., None]
) -> None:
    user = auth_api.sign_up()
    tries = 9
    unknown: list[float] = []
    wrong: list[float] = []
    sources = (f"203.0.113.{n}" for n in range(1, 255))
    # Warm both paths, then interleave so that machine noise hits both series alike.
    for _ in range(2):
        _login(auth_api.client, user["email"], "not-the-password", next(sources))
        _login(auth_api.client, f"nobody-{uuid.uuid4().hex}@x.example", "pw", next(sources))
    for _ in range(tries):
        for series, email in ((wrong, user["email"]), (unknown, None)):
            target = email or f"nobody-{uuid.uuid4().hex}@security.example.com"
            started = time.perf_counter()
            response = _login(auth_api.client, target, "not-the-password", next(sources))
            series.append(time.perf_counter() - started)
            assert response.status_code == 401, response.text
    unknown_median = statistics.median(unknown)
    wrong_median = statistics.median(wrong)
    ratio = unknown_median / wrong_median
    attack_report(
        fault="Login timing: unknown email vs wrong password (Argon2 64 MiB, t=3)",
        requests_sent=2 * tries + 4,
        requests_failed=0,
        failures_expected="401 for all",
        rows_checked=0,
        recovery_seconds=None,
        notes=f"medians {unknown_median * 1000:.0f} ms vs {wrong_median * 1000:.0f} ms, "
        f"ratio {ratio:.2f} (allowed 0.8-1.25)",
    )
    # Argon2 with the default costs takes tens of milliseconds or more; a skipped hash
    # would make the unknown-email path several times faster.
    assert wrong_median > 0.02, wrong_median
    assert 0.8 <= ratio <= 1.25, (unknown_median, wrong_median, ratio)
