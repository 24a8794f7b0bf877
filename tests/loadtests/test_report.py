"""The gate's judgement and report writer on a recorded Locust CSV and recorded scrapes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loadtests import promscrape
from loadtests.evaluate import evaluate
from loadtests.locust_csv import read_stats
from loadtests.report import render_summary, verdict, write_summary
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
    assert "| pool wait p95 | <= 1.0 ms | 5.0 ms | +4.0 ms (+400%) | FAIL |" in text
    assert "| pool timeouts | <= 0 | 2 | +2 | FAIL |" in text
    report = json.loads((tmp_path / "summary.json").read_text())
    assert report["passed"] is False
    assert report["service"]["cache_hit_ratio"] == pytest.approx(0.9)


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
    assert "| admin p95 | <= 10.0 ms | n/a | no data | SKIP |" in render_summary(
        [check], stats, metrics, {}
    )
