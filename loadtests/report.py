"""Write the gate's verdict: a markdown summary a person reads and a JSON one a pipeline reads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests.evaluate import Check
from loadtests.locust_csv import RunStats
from loadtests.service_metrics import ServiceMetrics


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "req/s":
        return f"{value:.1f} req/s"
    if unit == "ratio":
        return f"{value:.0%}"
    if abs(value) < 1 and value != 0:
        return f"{value:.4f}"
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"


def margin(check: Check) -> str:
    """How far the measurement is from its limit, in words: "38.0 ms under the limit",
    "12% of the limit short", never a bare signed number whose sign must be decoded."""
    if check.skipped:
        return "skipped"
    excess = check.excess
    if excess is None:
        return "nothing measured"
    distance = abs(excess)
    if check.unit == "ratio":
        amount = f"{distance * 100:.0f} points"
    elif check.unit in {"ms", "req/s"}:
        amount = fmt(distance, check.unit)
    else:
        amount = f"{distance:.4g}"
    ratio = check.excess_ratio
    if ratio is not None and check.unit != "ratio":
        amount += f" ({abs(ratio):.0%} of the limit)"
    if excess == 0:
        return "exactly at the limit"
    side = (
        ("over" if excess > 0 else "under")
        if check.bound == "max"
        else ("short of" if excess > 0 else "above")
    )
    return f"{amount} {side} the limit"


def result(check: Check) -> str:
    if check.skipped:
        return "SKIP"
    return "PASS" if check.passed else "FAIL"


def limit_text(check: Check) -> str:
    word = "at most" if check.bound == "max" else "at least"
    return f"{word} {fmt(check.limit, check.unit)}"


def verdict(checks: Sequence[Check]) -> bool:
    return all(check.passed for check in checks)


def checks_table(checks: Sequence[Check]) -> str:
    lines = [
        "| check | limit | measured | result | margin | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for check in checks:
        lines.append(
            f"| {check.name} | {limit_text(check)} | {fmt(check.measured, check.unit)} "
            f"| {result(check)} | {margin(check)} | {check.note} |"
        )
    return "\n".join(lines)


def routes_table(stats: RunStats) -> str:
    lines = [
        "| route | requests | failures | req/s | median ms | p95 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for route in (*sorted(stats.routes, key=lambda r: -r.requests), stats.total):
        lines.append(
            f"| {route.key} | {route.requests} | {route.failures} | {route.rps:.1f} "
            f"| {route.median_ms:.0f} | {route.p95_ms:.0f} | {route.p99_ms:.0f} "
            f"| {route.max_ms:.0f} |"
        )
    return "\n".join(lines)


def service_rows(metrics: ServiceMetrics) -> list[tuple[str, str]]:
    hit = metrics.cache_hit_ratio
    return [
        ("cache lookups", f"{metrics.cache_lookups:.0f}"),
        ("cache hit ratio", "n/a" if hit is None else f"{hit:.3f}"),
        *((f"cache {k}", f"{v:.0f}") for k, v in metrics.cache.items()),
        ("pool checkouts", f"{metrics.pool_checkouts:.0f}"),
        ("pool wait mean", fmt(metrics.pool_wait_mean_ms, "ms")),
        ("pool wait p95", fmt(metrics.pool_wait_p95_ms, "ms")),
        ("pool wait p99", fmt(metrics.pool_wait_p99_ms, "ms")),
        ("pool timeouts", f"{metrics.pool_timeouts:.0f}"),
        ("server-side requests", f"{metrics.server_requests:.0f}"),
        ("event-loop lag p99", fmt(metrics.loop_lag_p99_ms, "ms")),
    ]


def service_table(metrics: ServiceMetrics | None) -> str:
    if metrics is None:
        return "The service's /metrics could not be scraped."
    return "\n".join(
        ["| service metric (delta over the run) | value |", "| --- | ---: |"]
        + [f"| {k} | {v} |" for k, v in service_rows(metrics)]
    )


def render_summary(
    checks: Sequence[Check],
    stats: RunStats,
    metrics: ServiceMetrics | None,
    meta: Mapping[str, Any],
) -> str:
    passed = verdict(checks)
    failed = [c.name for c in checks if not c.passed]
    head = "PASS" if passed else f"FAIL ({len(failed)} of {len(checks)}: {', '.join(failed)})"
    settings = "\n".join(f"- {key}: `{value}`" for key, value in meta.items())
    return (
        "\n\n".join(
            [
                f"# Load-test gate: {head}",
                settings,
                "## Thresholds",
                checks_table(checks),
                "## Routes (client side, Locust)",
                routes_table(stats),
                "## Service (server side, /metrics)",
                service_table(metrics),
            ]
        )
        + "\n"
    )


def summary_json(
    checks: Sequence[Check],
    stats: RunStats,
    metrics: ServiceMetrics | None,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "passed": verdict(checks),
        "meta": dict(meta),
        "checks": [
            {
                "name": c.name,
                "bound": c.bound,
                "limit": c.limit,
                "measured": c.measured,
                "unit": c.unit,
                "passed": c.passed,
                "skipped": c.skipped,
                "excess": c.excess,
                "excess_ratio": c.excess_ratio,
                "note": c.note,
            }
            for c in checks
        ],
        "total": {
            "requests": stats.total.requests,
            "failures": stats.total.failures,
            "rps": stats.total.rps,
            "p95_ms": stats.total.p95_ms,
            "p99_ms": stats.total.p99_ms,
        },
        "service": None if metrics is None else metrics.to_dict(),
    }


def write_summary(
    out_dir: Path,
    checks: Sequence[Check],
    stats: RunStats,
    metrics: ServiceMetrics | None,
    meta: Mapping[str, Any],
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "summary.md"
    path.write_text(render_summary(checks, stats, metrics, meta), encoding="utf-8")
    (out_dir / "summary.json").write_text(
        json.dumps(summary_json(checks, stats, metrics, meta), indent=2) + "\n", encoding="utf-8"
    )
    return path
