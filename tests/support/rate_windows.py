"""Starting a test's counted requests early enough in a rate-limit window to all fall in it.

The service's limits are fixed windows aligned to multiples of their period
(`app/infra/rate_limit.py`): a test that spends a budget and expects the next request to be
refused fails whenever a window boundary falls between its requests, as the counter then
starts again from zero. With real Argon2 costs a few logins take seconds, enough to cross
one now and then.
"""

from __future__ import annotations

import time


def room_wait(period_seconds: int, needed_seconds: float, now: float | None = None) -> float:
    """Seconds to wait until the current window (or the next one) has `needed_seconds` left:
    0 when this one has, else the time to its end."""
    if needed_seconds >= period_seconds:
        raise ValueError(f"{needed_seconds} s never fit in a window of {period_seconds} s")
    moment = time.time() if now is None else now
    left = period_seconds - moment % period_seconds
    return 0.0 if left >= needed_seconds else left
