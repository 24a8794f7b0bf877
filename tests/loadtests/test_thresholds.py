"""The thresholds file: the shipped one parses, malformed ones are refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.thresholds import ThresholdsError, load_thresholds, parse_thresholds

REPO = Path(__file__).resolve().parents[2]


def test_shipped_thresholds_parse() -> None:
    thresholds = load_thresholds(REPO / "loadtests" / "thresholds.toml")
    assert thresholds.version == 1
    assert thresholds.max_pool_timeouts == 0
    assert {g.name for g in thresholds.groups} >= {"reads", "writes", "admin"}
    reads = next(g for g in thresholds.groups if g.name == "reads")
    assert "GET /api/v1/users/{id}" in reads.routes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 2}, "version"),
        ({"version": 1, "global": {"max_eror_ratio": 0.1}}, "max_eror_ratio"),
        ({"version": 1, "global": {"max_error_ratio": 2}}, "ratio"),
        ({"version": 1, "global": {"min_throughput_rps": True}}, "number"),
        ({"version": 1, "global": {"min_throughput_rps": -1}}, "negative"),
        ({"version": 1, "groups": {"reads": {"routes": []}}}, "routes"),
        ({"version": 1, "groups": {"reads": {"routes": ["GET /x"], "p90_ms": 1}}}, "p90_ms"),
        ({"version": 1, "extra": {}}, "extra"),
        ({"version": 1, "groups": {"a": {"routes": ["GET /x"], "optional": "yes"}}}, "true"),
    ],
)
def test_malformed_thresholds_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ThresholdsError, match=message):
        parse_thresholds(data)
