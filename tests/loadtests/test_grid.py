"""The sweep grid: one knob at a time around the baseline, each setting run once."""

from __future__ import annotations

import pytest

from loadtests.grid import GridError, Knobs, parse_grid

GRID = {
    "version": 1,
    "scenario": {"users": 5, "duration": "5s"},
    "baseline": {"workers": 2, "pool_size": 5, "max_overflow": 5, "cache_ttl": 300},
    "axes": {
        "workers": {"values": [1, 2]},
        "cache_ttl": {"values": [0, 300]},
        "pool": {"values": ["1+0", "5+5"], "with": {"cache_ttl": 0}},
    },
}


def test_points_are_unique_and_know_their_axes() -> None:
    grid = parse_grid(GRID)
    points = grid.points()
    assert next(p.knobs for p in points) == grid.baseline
    assert len({p.knobs for p in points}) == len(points) == 4
    off = next(p for p in points if p.knobs.cache_ttl == 0 and p.knobs.pool_size == 5)
    assert set(off.axes) == {"cache_ttl", "pool"}  # cache off at 5+5 is on both axes
    assert grid.scenario.users == 5


def test_knobs_become_the_services_environment() -> None:
    env = Knobs(workers=3, pool_size=2, max_overflow=1, cache_ttl=0, pool_timeout=1).env()
    assert env == {
        "WEB_CONCURRENCY": "3",
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "1",
        "DB_POOL_TIMEOUT": "1",
        "CACHE_ENABLED": "false",
    }
    assert Knobs(2, 5, 5, 60, 5).env()["CACHE_TTL_SECONDS"] == "60"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version"),
        ({"axes": {"threads": {"values": [1]}}}, "unknown axis"),
        ({"axes": {"pool": {"values": ["big"]}}}, "size"),
        ({"axes": {"workers": {"values": []}}}, "empty"),
    ],
)
def test_bad_grids_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(GridError, match=message):
        parse_grid({**GRID, **change})
