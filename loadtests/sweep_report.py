"""Write the sweep's report: the table, the comparisons that matter, plots and a values snippet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.grid import Knobs
from loadtests.recommend import Budget, Criteria, Recommendation, why_not
from loadtests.sweep_results import PointResult

AXIS_TITLES = {
    "workers": "gunicorn workers (WEB_CONCURRENCY)",
    "pool": "DB pool size + max overflow (cache off)",
    "cache_ttl": "user cache (CACHE_ENABLED / CACHE_TTL_SECONDS)",
}


def results_table(
    rows: Sequence[PointResult], criteria: Criteria, budget_rec: Recommendation
) -> str:
    budget = budget_rec.budget
    lines = [
        "| point | workers | pool | cache | req/s | p95 ms | p99 ms | reads p95 ms | errors "
        "| hit ratio | pool wait p95 ms | pool timeouts | DB conns peak "
        "| CPU ms/req service | CPU ms/req database "
        f"| conns x{budget.replicas} replicas | load avg | verdict |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        problems = why_not(r, criteria, budget)
        verdict = "ok" if not problems else "; ".join(problems)
        if not r.measured:
            lines.append(
                f"| {r.point} | {r.workers} | {r.pool_size}+{r.max_overflow} "
                f"| {r.knobs.cache_label} | - | - | - | - | - | - | - | - | - | - | - "
                f"| {budget.needed(r.knobs)} | - | {verdict} |"
            )
            continue
        lines.append(
            f"| {r.point} | {r.workers} | {r.pool_size}+{r.max_overflow} | {r.knobs.cache_label} "
            f"| {r.rps:.0f} | {r.p95_ms:.0f} | {r.p99_ms:.0f} | {r.reads_p95_ms:.0f} "
            f"| {r.error_ratio:.2%} | {r.cache_hit_ratio:.3f} | {r.pool_wait_p95_ms:.1f} "
            f"| {r.pool_timeouts:.0f} | {r.db_connections_peak} "
            f"| {r.service_cpu_ms_per_request:.2f} | {r.db_cpu_ms_per_request:.2f} "
            f"| {budget.needed(r.knobs)} "
            f"| {r.load_average:.1f} | {verdict} |"
        )
    return "\n".join(lines)


def _find(rows: Sequence[PointResult], **match: int) -> PointResult | None:
    return next(
        (r for r in rows if r.measured and all(getattr(r, k) == v for k, v in match.items())),
        None,
    )


def comparisons(
    rows: Sequence[PointResult], baseline: Knobs, rec_budget: Budget | None = None
) -> list[str]:
    """The numbers that show why the cache and the pool settings matter."""
    out: list[str] = []
    on = _find(
        rows,
        workers=baseline.workers,
        pool_size=baseline.pool_size,
        max_overflow=baseline.max_overflow,
        cache_ttl=baseline.cache_ttl,
    )
    off = _find(
        rows,
        workers=baseline.workers,
        pool_size=baseline.pool_size,
        max_overflow=baseline.max_overflow,
        cache_ttl=0,
    )
    if on and off and off.rps and on.cache_ttl:
        out.append(
            f"Cache on against off: {on.rps / off.rps:.2f}x the throughput "
            f"({on.rps:.0f} against {off.rps:.0f} req/s), reads p95 {on.reads_p95_ms:.0f} "
            f"against {off.reads_p95_ms:.0f} ms, pool checkouts {on.pool_checkouts:.0f} "
            f"against {off.pool_checkouts:.0f}"
            + (
                f"; CPU per request (steadier than req/s on a shared machine): service "
                f"{on.service_cpu_ms_per_request:.2f} against {off.service_cpu_ms_per_request:.2f}"
                f" ms, database {on.db_cpu_ms_per_request:.2f} against "
                f"{off.db_cpu_ms_per_request:.2f} ms."
                if on.service_cpu_ms_per_request and off.service_cpu_ms_per_request
                else "."
            )
        )
    pool_rows = sorted(
        (r for r in rows if r.measured and r.on("pool")),
        key=lambda r: r.pool_size + r.max_overflow,
    )
    if len(pool_rows) >= 2:
        small, large = pool_rows[0], pool_rows[-1]
        out.append(
            f"Pool too small ({small.pool_size}+{small.max_overflow}): pool wait p95 "
            f"{small.pool_wait_p95_ms:.1f} ms, {small.pool_timeouts:.0f} timeouts, "
            f"{small.error_ratio:.2%} errors, {small.rps:.0f} req/s."
        )
        # Against the next smaller pool: what the extra connections bought, and what they cost.
        smaller = pool_rows[-2]
        gain = large.rps / smaller.rps - 1 if smaller.rps else 0.0
        budget = rec_budget
        fits = "fits" if budget is None or budget.fits(large.knobs) else "does not fit"
        out.append(
            f"Pool too large ({large.pool_size}+{large.max_overflow}): {large.rps:.0f} req/s "
            f"against {smaller.rps:.0f} at {smaller.pool_size}+{smaller.max_overflow} "
            f"({gain:+.0%}), holding {large.db_connections_peak} server connections against "
            f"{smaller.db_connections_peak}; "
            + (
                f"at {budget.replicas} replicas it needs {budget.needed(large.knobs)} "
                f"connections, which {fits} the {budget.available} available."
                if budget is not None
                else f"{large.knobs.connections_per_replica} connections per replica."
            )
        )
    return out


def values_snippet(rec: Recommendation) -> str:
    """Ready Helm values for helm/user-service (its `config` env map, and the budget keys the
    chart checks: replicas from autoscaling.maxReplicas, postgres.maxConnections - reserved)."""
    if rec.knobs is None:
        return "# no recommendation: no measured setting fits the connection budget\n"
    k, b = rec.knobs, rec.budget
    lines = [
        "# Recommended by loadtests.sweep. Connection budget, counted as the chart does: "
        f"({b.replicas} replicas + 1 surge) x {k.workers} workers x ({k.pool_size}+"
        f"{k.max_overflow}+1 probe) + 1 migration = "
        f"{b.needed(k)} of {b.available} (max_connections {b.max_connections} - "
        f"{b.reserve} reserved); at most {b.max_replicas(k)} replicas with these settings.",
        "# Workers were measured on a 2-core machine: give a pod about one CPU per worker.",
        "# DB_POOL_TIMEOUT is left at the chart's default (the sweep lowers it only to make",
        "# an undersized pool show timeouts within a short run).",
        "config:",
        f"  WEB_CONCURRENCY: {k.workers}",
        f"  DB_POOL_SIZE: {k.pool_size}",
        f"  DB_MAX_OVERFLOW: {k.max_overflow}",
        f"  CACHE_ENABLED: {'true' if k.cache_ttl else 'false'}",
    ]
    if k.cache_ttl:
        lines.append(f"  CACHE_TTL_SECONDS: {k.cache_ttl}")
    lines += [
        "# The chart checks the budget at autoscaling.maxReplicas (replicaCount when off).",
        "autoscaling:",
        f"  maxReplicas: {b.replicas}",
    ]
    if b.replicas < 2:
        lines.append(f"  minReplicas: {b.replicas}")
    lines += [
        f"replicaCount: {min(b.replicas, 2)}",
        "postgres:",
        f"  maxConnections: {b.max_connections}",
        f"  reservedConnections: {b.reserve}",
    ]
    return "\n".join(lines) + "\n"


def plot_axis(
    rows: Sequence[PointResult],
    axis: str,
    path: Path,
    rec: Recommendation | None = None,
    criteria: Criteria | None = None,
) -> Path | None:
    """Four panels over one knob's values; with `rec` and `criteria`, the recommended value
    is marked on every panel, points that broke a criterion are crossed out, and each
    criterion is drawn as the line it was judged against."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.on(axis) and r.measured]
    if not points:
        return None
    if axis == "pool":
        points.sort(key=lambda r: (r.pool_size + r.max_overflow, r.pool_size))
    elif axis == "workers":
        points.sort(key=lambda r: r.workers)
    else:
        points.sort(key=lambda r: r.cache_ttl)
    labels = [r.knobs.label(axis) for r in points]
    x = list(range(len(points)))
    fig, panels = plt.subplots(2, 2, figsize=(10, 7))
    fig.suptitle(f"Sweep: {AXIS_TITLES.get(axis, axis)}")
    series = [
        (panels[0][0], "throughput (req/s)", [("req/s", [r.rps for r in points])]),
        (
            panels[0][1],
            "latency (ms)",
            [("p95", [r.p95_ms for r in points]), ("p99", [r.p99_ms for r in points])],
        ),
        (
            panels[1][0],
            "pool checkout wait p95 (ms)",
            [("wait p95 ms", [r.pool_wait_p95_ms for r in points])],
        ),
        (panels[1][1], "error ratio (%)", [("errors %", [100 * r.error_ratio for r in points])]),
    ]
    for ax, title, lines in series:
        for name, values in lines:
            ax.plot(x, values, marker="o", label=name)
        ax.set_title(title)
        ax.set_xticks(x, labels)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        if len(lines) > 1:
            ax.legend()
    # CPU per request next to throughput: the steadier of the two on a shared machine.
    if any(r.service_cpu_ms_per_request for r in points):
        cpu_axis = panels[0][0].twinx()
        cpu_axis.plot(
            x,
            [r.service_cpu_ms_per_request + r.db_cpu_ms_per_request for r in points],
            marker="s",
            linestyle="--",
            color="tab:green",
        )
        cpu_axis.set_ylabel("CPU ms per request (dashed)", color="tab:green")
        cpu_axis.set_ylim(bottom=0)
    # Timeouts are a count, not milliseconds: their own axis, so a few dozen still show.
    timeouts = panels[1][0].twinx()
    timeouts.bar(x, [r.pool_timeouts for r in points], alpha=0.3, color="tab:red")
    timeouts.set_ylabel("pool timeouts (bars)", color="tab:red")
    timeouts.set_ylim(bottom=0)
    if criteria is not None:
        _mark_criteria(panels, x, points, axis, rec, criteria)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _mark_criteria(
    panels: Any,
    x: list[int],
    points: Sequence[PointResult],
    axis: str,
    rec: Recommendation | None,
    criteria: Criteria,
) -> None:
    throughput, latency = panels[0]
    wait, errors = panels[1]
    budget = rec.budget if rec is not None else None
    wait.axhline(
        criteria.max_pool_wait_p95_ms,
        color="tab:orange",
        linestyle=":",
        label=f"limit {criteria.max_pool_wait_p95_ms:g} ms (unless < "
        f"{criteria.max_pool_wait_share:.0%} of p95)",
    )
    wait.legend(fontsize=7, loc="upper left")
    errors.axhline(
        100 * criteria.max_error_ratio,
        color="tab:orange",
        linestyle=":",
        label=f"limit {criteria.max_error_ratio:.0%}",
    )
    errors.set_ylim(top=max(errors.get_ylim()[1], 150 * criteria.max_error_ratio))
    errors.legend(fontsize=7, loc="upper left")
    eligible = [
        i for i, r in enumerate(points) if budget is None or not why_not(r, criteria, budget)
    ]
    if eligible:
        best = max(points[i].rps for i in eligible)
        throughput.axhline(
            (1 - criteria.tolerance) * best,
            color="tab:orange",
            linestyle=":",
            label=f"within {criteria.tolerance:.0%} of the best eligible",
        )
        throughput.legend(fontsize=7, loc="upper left")
    for i in range(len(points)):
        if i not in eligible:
            for ax in (throughput, latency, wait, errors):
                ax.axvspan(i - 0.3, i + 0.3, color="tab:red", alpha=0.08)
            throughput.annotate(
                "not eligible", (i, 0), fontsize=7, color="tab:red", ha="center", va="bottom"
            )
    if rec is not None and rec.knobs is not None:
        chosen = rec.knobs.label(axis)
        for i, row in enumerate(points):
            if row.knobs.label(axis) == chosen:
                for ax in (throughput, latency, wait, errors):
                    ax.axvline(x[i], color="tab:green", linewidth=2, alpha=0.6)
                throughput.annotate(
                    f"recommended: {chosen}",
                    (x[i], row.rps),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    color="tab:green",
                    fontweight="bold",
                )


def render_report(
    rows: Sequence[PointResult],
    baseline: Knobs,
    criteria: Criteria,
    rec: Recommendation,
    plots: Sequence[Path],
    header: Sequence[str],
) -> str:
    parts = [
        "# Tuning sweep",
        "\n".join(f"- {line}" for line in header),
        "## Results",
        results_table(rows, criteria, rec),
        "## Why the cache and the pool matter",
        "\n".join(f"- {line}" for line in comparisons(rows, baseline, rec.budget))
        or "- (not enough points)",
        "## Recommendation",
        "\n".join(f"- {line}" for line in rec.reasons)
        + ("\n" + "\n".join(f"- WARNING: {w}" for w in rec.warnings) if rec.warnings else ""),
        "```yaml\n" + values_snippet(rec) + "```",
        "## Plots",
        "\n".join(f"![{p.stem}]({p.name})" for p in plots),
    ]
    return "\n\n".join(parts) + "\n"
