"""The wait that keeps a test's counted requests inside one fixed rate-limit window."""

from __future__ import annotations

import pytest

from app.infra import rate_limit
from app.infra.rate_limit import RateLimiter
from app.settings import Rate
from tests.support.rate_windows import room_wait


def test_no_wait_when_the_window_has_room() -> None:
    assert room_wait(60, 10, now=120.0) == 0.0
    assert room_wait(60, 10, now=170.0) == 0.0


def test_waits_out_a_window_too_close_to_its_end() -> None:
    assert room_wait(60, 10, now=171.0) == pytest.approx(9.0)
    assert room_wait(60, 10, now=179.5) == pytest.approx(0.5)


def test_the_wait_ends_where_the_limiters_window_does(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_700_000_035.25  # 55.25 s into a minute
    monkeypatch.setattr(rate_limit.time, "time", lambda: now)
    limiter = RateLimiter(None, prefix="t", fail_open=True)  # type: ignore[arg-type]
    window = limiter.window("login", "client", Rate(5, 60))
    assert room_wait(60, 10, now=now) == pytest.approx(window.left_ms / 1000)
    assert window.left_ms == 4750


def test_a_need_longer_than_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="never fit"):
        room_wait(60, 60)
