"""The load a run offers: what a service that kept up would have served, from users and think time.

Each simulated user sends about one request per think time (the journeys are one request
per task; a logout adds a login), so a service that keeps up serves close to
users / mean think time requests per second once every user has spawned. Judging measured
throughput against that, not against a fixed number, makes the gate's verdict mean the
same at 5 users and at 500: below the floor, requests queued in the service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> float:
    """Locust's run time ("90", "60s", "2m", "1h30m") in seconds."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"duration must look like 60s, 2m or 1h30m, got {text!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


@dataclass(frozen=True)
class OfferedLoad:
    users: int
    spawn_rate: float
    duration_s: float
    wait_min_s: float
    wait_max_s: float

    @property
    def mean_wait_s(self) -> float:
        return (self.wait_min_s + self.wait_max_s) / 2

    @property
    def user_seconds(self) -> float:
        """Seconds users were running, summed: the ramp (users / spawn rate) counts half."""
        ramp = self.ramp_s
        reached = min(float(self.users), ramp * self.spawn_rate) if ramp else float(self.users)
        return reached * ramp / 2 + reached * (self.duration_s - ramp)

    @property
    def ramp_s(self) -> float:
        if self.spawn_rate <= 0:
            return 0.0
        return min(self.users / self.spawn_rate, self.duration_s)

    @property
    def rps(self) -> float:
        """Requests per second over the run if every request took no time at all."""
        if self.duration_s <= 0 or self.mean_wait_s <= 0:
            return 0.0
        return self.user_seconds / self.mean_wait_s / self.duration_s

    def describe(self) -> str:
        return (
            f"{self.users} users / {self.mean_wait_s:.2f} s mean think time, "
            f"ramp {self.ramp_s:.0f} s of "
            f"{self.duration_s:.0f} s = {self.rps:.1f} req/s offered"
        )
