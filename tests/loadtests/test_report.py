"""The gate's judgement and report writer on a recorded Locust CSV and recorded scrapes."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from loadtests import promscrape
from loadtests.evaluate import evaluate
from loadtests.locust_csv import read_stats
from loadtests.offered import OfferedLoad
from loadtests.report import margin, render_summary, verdict, write_summary
from loadtests.service_metrics import summarise
from loadtests.thresholds import parse_thresholds

LOOSE = {
    "version": 1,
    "run": {"min_requests": 10},
    "global": {
        "max_error_ratio": 0.05,
        "min_throughput_rps": 1,
        "min_cache_hit_ratio": 0.5,
        "max_pool_wait_p95_ms": 100,
        "max_pool_timeouts": 5,
    },
    "groups": {
        "reads": {
            "routes": ["GET /api/v1/users/{id}", "GET /api/v1/users/me"],
            "p95_ms": 5000,
            "p99_ms": 5000,
        }
    },
}


def _inputs(data: Path):  # type: ignore[no-untyped-def]
    stats = read_stats(data / "locust_stats.csv")
    before = promscrape.parse_metrics((data / "metrics_before.txt").read_text())
    after = promscrape.parse_metrics((data / "metrics_after.txt").read_text())
    return stats, summarise(before, after)


def test_recorded_csv_is_read_by_route_template(data: Path) -> None:
    stats, _ = _inputs(data)
    route = stats.route("GET /api/v1/users/{id}")
    assert route is not None
    assert route.requests > 0
    assert stats.total.requests == sum(r.requests for r in stats.routes)
    # Ids never split the stats: no route name carries a UUID.
    assert not [r.name for r in stats.routes if re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", r.name)]


def test_loose_thresholds_pass(data: Path) -> None:
    stats, metrics = _inputs(data)
    checks = evaluate(parse_thresholds(LOOSE), stats, metrics)
    assert verdict(checks), [c for c in checks if not c.passed]


def test_tight_thresholds_fail_and_say_by_how_much(data: Path, tmp_path: Path) -> None:
    stats, metrics = _inputs(data)
    tight = {
        "version": 1,
        "global": {
            "min_throughput_rps": 1e6,
            "min_cache_hit_ratio": 0.99,
            "max_pool_wait_p95_ms": 1,
            "max_pool_timeouts": 0,
        },
        "groups": {"reads": {"routes": ["GET /api/v1/users/{id}"], "p95_ms": 0.001}},
    }
    checks = evaluate(parse_thresholds(tight), stats, metrics)
    failed = {c.name: c for c in checks if not c.passed}
    assert set(failed) == {
        "throughput",
        "cache hit ratio",
        "pool wait p95",
        "pool timeouts",
        "reads p95",
    }
    assert failed["pool wait p95"].excess == pytest.approx(4.0)  # 5 ms against 1 ms
    assert failed["pool timeouts"].excess == 2
    assert failed["cache hit ratio"].excess_ratio == pytest.approx((0.99 - 0.9) / 0.99)

    summary = write_summary(tmp_path, checks, stats, metrics, {"host": "http://127.0.0.1:1"})
    text = summary.read_text()
    assert text.startswith("# Load-test gate: FAIL (5 of")
    # Plain words: which way the limit goes, which way the measurement missed it.
    assert (
        "| pool wait p95 | at most 1.0 ms | 5.0 ms | FAIL | 4.0 ms (400% of the limit) "
        "over the limit |" in text
    )
    assert "| pool timeouts | at most 0 | 2 | FAIL | 2 over the limit |" in text
    assert "| reads p95 | at most 0.0 ms |" in text
    assert "| event-loop lag p99 | 17.5 ms |" in text
    report = json.loads((tmp_path / "summary.json").read_text())
    assert report["passed"] is False
    assert report["service"]["cache_hit_ratio"] == pytest.approx(0.9)
    assert report["service"]["loop_lag_p99_ms"] == pytest.approx(17.5)


def test_group_with_no_requests_fails_rather_than_passes(data: Path) -> None:
    stats, metrics = _inputs(data)
    thresholds = parse_thresholds(
        {"version": 1, "groups": {"ghost": {"routes": ["GET /nowhere"], "p95_ms": 10}}}
    )
    (check,) = [c for c in evaluate(thresholds, stats, metrics) if c.name == "ghost p95"]
    assert not check.passed
    assert "no requests" in check.note


def test_unscrapable_service_fails_service_checks(data: Path) -> None:
    stats, _ = _inputs(data)
    checks = evaluate(parse_thresholds(LOOSE), stats, None)
    assert not verdict(checks)
    assert "could not be scraped" in render_summary(checks, stats, None, {})


def test_optional_group_without_requests_is_skipped(data: Path) -> None:
    stats, metrics = _inputs(data)
    thresholds = parse_thresholds(
        {
            "version": 1,
            "groups": {"admin": {"routes": ["GET /nowhere"], "p95_ms": 10, "optional": True}},
        }
    )
    (check,) = [c for c in evaluate(thresholds, stats, metrics) if c.name == "admin p95"]
    assert check.skipped
    assert check.passed
    assert "| admin p95 | at most 10.0 ms | n/a | SKIP | skipped |" in render_summary(
        [check], stats, metrics, {}
    )


def test_margins_read_plainly_both_ways(data: Path) -> None:
    stats, metrics = _inputs(data)
    checks = evaluate(
        parse_thresholds({"version": 1, "global": {"min_cache_hit_ratio": 0.5}}),
        stats,
        metrics,
    )
    (hit,) = [c for c in checks if c.name == "cache hit ratio"]
    assert hit.passed
    assert margin(hit) == "0.4 (80% of the limit) above the limit"


def test_throughput_is_judged_against_the_offered_load(data: Path) -> None:
    stats, metrics = _inputs(data)
    thresholds = parse_thresholds({"version": 1, "global": {"min_throughput_of_offered": 0.8}})
    # The recorded run served stats.total.rps; offer a little more, then far more.
    kept_up = OfferedLoad(users=10, spawn_rate=100, duration_s=60, wait_min_s=0, wait_max_s=0)
    for offered_rps, passed in ((stats.total.rps * 1.1, True), (stats.total.rps * 3, False)):
        mean_wait = 10 / offered_rps
        offered = replace(kept_up, wait_min_s=mean_wait, wait_max_s=mean_wait)
        (check,) = [
            c
            for c in evaluate(thresholds, stats, metrics, offered)
            if c.name == "throughput / offered"
        ]
        assert check.passed is passed, check
        assert "req/s offered" in check.note
