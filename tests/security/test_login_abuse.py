"""Password guessing against the real service: the login limit holds across workers, and an
unknown email costs one verification like a wrong password (real Argon2 costs)."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.observability.metric_values import FLUSH_INTERVAL_SECONDS
from tests.security.conftest import PASSWORD, Api
from tests.support.rate_windows import room_wait

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
    # The limit is a fixed window of a minute: every counted attempt must fall in one.
    time.sleep(room_wait(60, 15))
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


def _verifications(api: Api) -> tuple[float, float]:
    """(count, seconds) of the Argon2 verifications every worker has run so far."""
    count = seconds = 0.0
    for family in text_string_to_metric_families(httpx.get(api.service.metrics_url).text):
        if family.name != "user_service_password_hash_duration_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("operation") != "verify":
                continue
            if sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_sum"):
                seconds += sample.value
    return count, seconds


def _verifications_reaching(api: Api, count: float) -> tuple[float, float]:
    """(count, seconds) once the count has reached `count`, or after 10 s. Each worker writes
    its samples for the other's scrapes once a second, so a verification the other worker ran
    shows up a moment after its answer."""
    deadline = time.monotonic() + 10
    found = _verifications(api)
    while found[0] < count and time.monotonic() < deadline:
        time.sleep(0.05)
        found = _verifications(api)
    return found


def _settled_verifications(api: Api) -> tuple[float, float]:
    """(count, seconds) once every worker has written what it counted: unchanged across more
    than one write interval."""
    found = _verifications(api)
    for _ in range(20):
        time.sleep(FLUSH_INTERVAL_SECONDS + 0.2)
        again = _verifications(api)
        if again == found:
            return found
        found = again
    raise AssertionError(f"the verification count never settled: {found}")


def test_unknown_email_and_wrong_password_cost_one_equal_verification(
    auth_api: Api, attack_report: Callable[..., None]
) -> None:
    """An unknown email must cost what a wrong password costs: one Argon2 verification at
    the configured cost. Counted exactly from the service's own metric, and its duration
    measured inside the service, where network and client noise do not reach."""
    user = auth_api.sign_up()
    tries = 12
    unknown: list[float] = []
    wrong: list[float] = []
    sources = (f"203.0.113.{n}" for n in range(1, 255))
    count_before, seconds_before = start = _settled_verifications(auth_api)
    # Interleaved, so that machine noise hits both series alike.
    for _ in range(tries):
        for series, email in ((wrong, user["email"]), (unknown, None)):
            target = email or f"nobody-{uuid.uuid4().hex}@security.example.com"
            response = _login(auth_api.client, target, "not-the-password", next(sources))
            assert response.status_code == 401, response.text
            count_after, seconds_after = _verifications_reaching(auth_api, count_before + 1)
            # Exactly one verification, whether or not the email names a user.
            assert count_after - count_before == 1, (target, count_after - count_before)
            series.append(seconds_after - seconds_before)
            count_before, seconds_before = count_after, seconds_after
    # A second verification counted late would have surfaced in a later step or shows here.
    assert _settled_verifications(auth_api)[0] == start[0] + 2 * tries
    unknown_median = statistics.median(unknown)
    wrong_median = statistics.median(wrong)
    ratio = unknown_median / wrong_median
    attack_report(
        fault="Login cost: unknown email vs wrong password (Argon2 64 MiB, t=3)",
        requests_sent=2 * tries + 1,
        requests_failed=0,
        failures_expected="401 for all, one verification each",
        rows_checked=0,
        recovery_seconds=None,
        notes=f"verify medians {unknown_median * 1000:.0f} ms vs {wrong_median * 1000:.0f} ms, "
        f"ratio {ratio:.2f} (allowed 0.5-2)",
    )
    # The default costs take tens of milliseconds; a dummy hash made with cheaper parameters
    # would verify an order of magnitude faster than a real one, far outside these bounds.
    assert wrong_median > 0.02, wrong_median
    assert 0.5 <= ratio <= 2.0, (unknown_median, wrong_median, ratio)


def test_guessing_one_account_from_many_addresses_is_throttled(
    api: Api, attack_report: Callable[..., None]
) -> None:
    """The per-address limit cannot see a guesser that rotates addresses; the per-account
    throttle (shared by every worker through PostgreSQL) can."""
    user = api.sign_up()
    sources = (f"198.51.100.{n}" for n in range(1, 255))
    statuses = [
        _login(api.client, user["email"], f"guess-{n}", next(sources)).status_code for n in range(8)
    ]
    right = _login(api.client, user["email"], PASSWORD, next(sources))
    attack_report(
        fault="Password guessing on one account from 9 addresses",
        requests_sent=len(statuses) + 1,
        requests_failed=0,
        failures_expected="401 x5, then 429 (even for the right password)",
        rows_checked=0,
        recovery_seconds=None,
        notes=f"statuses {[*statuses, right.status_code]}; Retry-After "
        f"{right.headers.get('retry-after')}s",
    )
    assert statuses[:5] == [401] * 5
    assert 429 in statuses[5:]
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
