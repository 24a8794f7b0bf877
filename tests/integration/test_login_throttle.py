"""Per-account login throttling: shared by two instances on one PostgreSQL, growing delays,
no permanent lockout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY

from app.services.login_throttle import ThrottlePolicy
from tests.support.app_harness import PASSWORD, AppHarness

THROTTLE = {
    "LOGIN_THROTTLE_FREE_FAILURES": 2,
    "LOGIN_THROTTLE_BASE_DELAY_SECONDS": 1,
    "LOGIN_THROTTLE_MAX_DELAY_SECONDS": 2,
}


def test_delays_double_after_the_free_failures_up_to_the_cap() -> None:
    policy = ThrottlePolicy(3, 1.0, 300.0, timedelta(hours=1))
    assert [policy.delay(n) for n in range(1, 9)] == [0, 0, 0, 1, 2, 4, 8, 16]
    assert policy.delay(40) == 300.0
    assert policy.delay(10_000) == 300.0


async def _login(harness: AppHarness, email: str, password: str) -> Any:
    return await harness.client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}
    )


async def test_failures_on_one_instance_throttle_the_account_on_another(
    make_harness: Callable[..., Any],
) -> None:
    first: AppHarness = await make_harness(**THROTTLE)
    second: AppHarness = await make_harness(clean=False, **THROTTLE)
    await first.sign_up("target@example.com")
    await first.sign_up("bystander@example.com")
    before = (
        REGISTRY.get_sample_value("user_service_auth_events_total", {"event": "login_throttled"})
        or 0.0
    )
    # Two free failures, then the third starts a 1 s wait, spread over both instances.
    for harness in (first, second, first):
        assert (await _login(harness, "target@example.com", "wrong guess")).status_code == 401
    throttled = await _login(second, "target@example.com", PASSWORD)
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/problem+json"
    assert 1 <= int(throttled.headers["retry-after"]) <= 2
    assert "account" in throttled.json()["detail"]
    assert (
        REGISTRY.get_sample_value("user_service_auth_events_total", {"event": "login_throttled"})
        == before + 1
    )
    # Other accounts are not slowed down, and unknown ones are throttled alike.
    assert (await _login(first, "bystander@example.com", PASSWORD)).status_code == 200
    for _ in range(3):
        await _login(first, "ghost@example.com", "guess")
    assert (await _login(second, "ghost@example.com", "guess")).status_code == 429
    # The delay grows with each failure (1 s, then 2 s), and stops at the cap.
    await asyncio.sleep(1.1)
    assert (await _login(first, "target@example.com", "wrong again")).status_code == 401
    retry = (await _login(second, "target@example.com", PASSWORD)).headers["retry-after"]
    assert int(retry) == 2
    await asyncio.sleep(2.1)
    assert (await _login(first, "target@example.com", "and again")).status_code == 401
    retry = (await _login(second, "target@example.com", PASSWORD)).headers["retry-after"]
    assert int(retry) == 2
    # No lockout for good: once the wait is over the right password works, and resets it.
    await asyncio.sleep(2.1)
    assert (await _login(second, "target@example.com", PASSWORD)).status_code == 200
    assert (await _login(first, "target@example.com", "one slip")).status_code == 401
    assert (await _login(first, "target@example.com", PASSWORD)).status_code == 200
