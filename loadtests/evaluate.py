"""Judge one run against the thresholds: one Check per limit, each saying by how much it missed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loadtests.locust_csv import RunStats
from loadtests.offered import OfferedLoad
from loadtests.service_metrics import ServiceMetrics
from loadtests.thresholds import Thresholds

Bound = Literal["max", "min"]


@dataclass(frozen=True)
class Check:
    name: str
    bound: Bound
    limit: float
    measured: float | None  # None: nothing to measure, which fails the check
    unit: str = ""
    note: str = ""
    skipped: bool = False

    @property
    def passed(self) -> bool:
        if self.skipped:
            return True
        if self.measured is None:
            return False
        if self.bound == "max":
            return self.measured <= self.limit
        return self.measured >= self.limit

    @property
    def excess(self) -> float | None:
        """How far past the limit, in the check's unit (positive means failed)."""
        if self.measured is None:
            return None
        if self.bound == "max":
            return self.measured - self.limit
        return self.limit - self.measured

    @property
    def excess_ratio(self) -> float | None:
        """The excess relative to the limit; None when the limit is 0 (relative is meaningless)."""
        excess = self.excess
        if excess is None or self.limit == 0:
            return None
        return excess / self.limit


def _group_worst(stats: RunStats, routes: tuple[str, ...], attr: str) -> tuple[float | None, str]:
    """Worst member percentile: an upper bound of the group's percentile (each member has
    at least that share of its requests under its own value, so the mix does too)."""
    seen = [r for key in routes if (r := stats.route(key)) is not None and r.requests > 0]
    if not seen:
        return None, "no requests on any route of the group"
    worst = max(seen, key=lambda r: getattr(r, attr))
    absent = [key for key in routes if stats.route(key) is None]
    note = f"worst: {worst.key}"
    if absent:
        note += f"; no requests: {', '.join(absent)}"
    return float(getattr(worst, attr)), note


def evaluate(
    thresholds: Thresholds,
    stats: RunStats,
    metrics: ServiceMetrics | None,
    offered: OfferedLoad | None = None,
) -> list[Check]:
    checks: list[Check] = []
    total = stats.total
    checks.append(
        Check(
            "requests",
            "min",
            float(thresholds.min_requests),
            float(total.requests),
            note="enough requests for percentiles to mean something",
        )
    )
    if thresholds.max_error_ratio is not None:
        checks.append(
            Check(
                "error ratio",
                "max",
                thresholds.max_error_ratio,
                total.error_ratio,
                note=f"{total.failures} of {total.requests} failed",
            )
        )
    if thresholds.min_throughput_of_offered is not None:
        # Served against offered: a service that keeps up serves nearly all of it, whatever
        # the user count; a saturated one queues requests and falls behind.
        if offered is None or offered.rps <= 0:
            checks.append(
                Check("throughput / offered", "min", thresholds.min_throughput_of_offered, None)
            )
        else:
            checks.append(
                Check(
                    "throughput / offered",
                    "min",
                    thresholds.min_throughput_of_offered,
                    total.rps / offered.rps,
                    "ratio",
                    f"{total.rps:.1f} req/s served of {offered.describe()}",
                )
            )
    if thresholds.min_throughput_rps is not None:
        checks.append(Check("throughput", "min", thresholds.min_throughput_rps, total.rps, "req/s"))
    for group in thresholds.groups:
        for attr, limit, label in (
            ("p95_ms", group.p95_ms, "p95"),
            ("p99_ms", group.p99_ms, "p99"),
        ):
            if limit is None:
                continue
            measured, note = _group_worst(stats, group.routes, attr)
            skipped = measured is None and group.optional
            if skipped:
                note = "optional group, no requests: skipped"
            checks.append(
                Check(f"{group.name} {label}", "max", limit, measured, "ms", note, skipped)
            )

    service_checks = (
        thresholds.min_cache_hit_ratio,
        thresholds.max_pool_wait_p95_ms,
        thresholds.max_pool_timeouts,
    )
    if metrics is None:
        if any(limit is not None for limit in service_checks):
            checks.append(Check("service /metrics", "min", 1, None, note="could not be scraped"))
        return checks
    if metrics.missing:
        checks.append(
            Check(
                "metrics contract",
                "max",
                0,
                float(len(metrics.missing)),
                note="missing: " + ", ".join(metrics.missing),
            )
        )
    if thresholds.min_cache_hit_ratio is not None:
        checks.append(
            Check(
                "cache hit ratio",
                "min",
                thresholds.min_cache_hit_ratio,
                metrics.cache_hit_ratio,
                note=", ".join(f"{k}={v:.0f}" for k, v in metrics.cache.items()),
            )
        )
    if thresholds.max_pool_wait_p95_ms is not None:
        # No checkout at all (everything served from cache) is a pass, not a missing value.
        wait = metrics.pool_wait_p95_ms if metrics.pool_checkouts else 0.0
        checks.append(
            Check(
                "pool wait p95",
                "max",
                thresholds.max_pool_wait_p95_ms,
                wait,
                "ms",
                f"{metrics.pool_checkouts:.0f} checkouts",
            )
        )
    if thresholds.max_pool_timeouts is not None:
        checks.append(
            Check("pool timeouts", "max", thresholds.max_pool_timeouts, metrics.pool_timeouts)
        )
    return checks
