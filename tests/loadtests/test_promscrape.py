"""Counter and histogram deltas between two recorded scrapes, as Prometheus would compute them."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import promscrape
from loadtests.service_metrics import summarise


def _scrapes(data: Path) -> tuple[promscrape.Snapshot, promscrape.Snapshot]:
    return (
        promscrape.parse_metrics((data / "metrics_before.txt").read_text()),
        promscrape.parse_metrics((data / "metrics_after.txt").read_text()),
    )


def test_summary_of_recorded_scrapes(data: Path) -> None:
    metrics = summarise(*_scrapes(data))
    assert metrics.cache == {"hit": 900, "miss": 100, "error": 0, "bypass": 0}
    assert metrics.cache_hit_ratio == pytest.approx(0.9)
    assert metrics.pool_checkouts == 200
    assert metrics.pool_timeouts == 2
    # Rank 190 of 200 ends exactly at the 5 ms bucket bound; rank 198 sits halfway in (25, 50].
    assert metrics.pool_wait_p95_ms == pytest.approx(5.0)
    assert metrics.pool_wait_p99_ms == pytest.approx(37.5)
    assert metrics.pool_wait_mean_ms == pytest.approx(3.0)
    assert metrics.server_requests == 1200
    # 600 checks; rank 594 sits halfway into (10, 25] ms, which holds 8 of them.
    assert metrics.loop_lag_p99_ms == pytest.approx(17.5)
    assert metrics.missing == ()


def test_counter_reset_counts_the_value_after_it() -> None:
    before = promscrape.parse_metrics("# TYPE c_total counter\nc_total 50\n")
    after = promscrape.parse_metrics("# TYPE c_total counter\nc_total 7\n")
    assert promscrape.counter_delta(before, after, "c_total") == 7


def test_quantile_past_last_finite_bucket_reports_that_bound() -> None:
    hist = promscrape.HistogramDelta(buckets=((1.0, 1), (float("inf"), 10)), count=10, sum=50)
    assert hist.quantile(0.95) == 1.0
    assert promscrape.HistogramDelta(buckets=(), count=0, sum=0).quantile(0.95) is None


def test_missing_contract_metrics_are_named() -> None:
    empty = promscrape.parse_metrics("")
    metrics = summarise(empty, empty)
    assert promscrape.POOL_TIMEOUTS in metrics.missing
    assert metrics.cache_hit_ratio is None


def test_scrapes_of_several_pods_add_up() -> None:
    pod_a = promscrape.parse_metrics('# TYPE c_total counter\nc_total{result="hit"} 3\n')
    pod_b = promscrape.parse_metrics('# TYPE c_total counter\nc_total{result="hit"} 4\n')
    merged = promscrape.merge([pod_a, pod_b])
    assert merged.select("c_total", result="hit") == {frozenset({("result", "hit")}): 7.0}


def test_pod_urls_resolve_every_address() -> None:
    assert "http://127.0.0.1:8000" in promscrape.pod_urls("127.0.0.1:8000")
    with pytest.raises(ValueError, match="HOST:PORT"):
        promscrape.pod_urls("no-port")


def test_a_service_without_the_loop_lag_metric_reports_none() -> None:
    scrape = promscrape.parse_metrics("# TYPE http_requests_total counter\nhttp_requests_total 5\n")
    assert summarise(scrape, scrape).loop_lag_p99_ms is None
