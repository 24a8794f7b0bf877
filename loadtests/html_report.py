"""The gate's one HTML report: the verdict and the thresholds first, then the charts and tables.

Self-contained (charts are inline PNGs), so it opens from a CI artefact or a pod's volume
without anything beside it; Locust's own page is kept as locust.html for its live details.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests.evaluate import Check
from loadtests.locust_csv import RunStats
from loadtests.offered import OfferedLoad
from loadtests.report import fmt, limit_text, margin, result, service_rows, verdict
from loadtests.service_metrics import ServiceMetrics

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 24px 32px; color: #1d232b; }
h1 { font-size: 30px; margin: 0 0 4px; padding: 12px 18px; border-radius: 6px; color: #fff; }
h1.pass { background: #1a7f37; } h1.fail { background: #c62828; }
h2 { font-size: 19px; margin: 26px 0 8px; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td.PASS { color: #1a7f37; font-weight: 700; } td.FAIL { color: #c62828; font-weight: 700; }
td.SKIP { color: #6e7781; font-weight: 700; }
tr.FAIL td { background: #fff0f0; }
.lead { font-size: 17px; margin: 8px 0 0; }
.meta { color: #57606a; font-size: 13px; columns: 2; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 6px 0; }
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr>"]
    for index, row in enumerate(rows):
        css = classes[index] if index < len(classes) else ""
        out.append(f'<tr class="{css}">')
        for column, cell in enumerate(row):
            cls = f' class="{cell}"' if head[column] == "result" else ""
            out.append(f"<td{cls}>{html.escape(cell)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="chart" src="data:image/png;base64,{encoded}">'


def _history(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def _charts(checks: Sequence[Check], history_csv: Path, offered: OfferedLoad | None) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        return ["<p>No charts: matplotlib is not installed (the loadtest extra has it).</p>"]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: list[str] = []
    rows = _history(history_csv)
    if rows:
        start = float(rows[0]["Timestamp"])
        seconds = [float(r["Timestamp"]) - start for r in rows]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
        top.plot(seconds, [_number(r["Requests/s"]) for r in rows], label="served req/s")
        top.plot(seconds, [_number(r["Failures/s"]) for r in rows], label="failed req/s", c="r")
        if offered is not None:
            top.axhline(offered.rps, ls="--", c="grey", label=f"offered {offered.rps:.0f} req/s")
        users = top.twinx()
        users.plot(seconds, [_number(r["User Count"]) for r in rows], c="k", lw=0.8, alpha=0.4)
        users.set_ylabel("users")
        top.set_ylabel("req/s")
        top.legend(loc="upper left")
        top.set_title("Throughput over the run")
        for column, label in (("50%", "p50"), ("95%", "p95"), ("99%", "p99")):
            bottom.plot(seconds, [_number(r[column]) for r in rows], label=f"{label} (all routes)")
        bottom.set_ylabel("ms")
        bottom.set_xlabel("seconds since start")
        bottom.legend(loc="upper left")
        bottom.set_title("Response time over the run (Locust's 10 s window)")
        fig.tight_layout()
        charts.append(_png(fig))
        plt.close(fig)

    judged = [c for c in checks if c.measured is not None and c.limit and not c.skipped]
    if judged:
        fig, ax = plt.subplots(figsize=(11, 0.45 * len(judged) + 1.2))
        shares = [100 * (c.measured or 0) / c.limit for c in judged]
        colours = ["#1a7f37" if c.passed else "#c62828" for c in judged]
        ax.barh([c.name for c in judged], shares, color=colours)
        ax.axvline(100, c="k", ls="--", lw=1)
        for index, (check, share) in enumerate(zip(judged, shares, strict=True)):
            ax.text(
                share,
                index,
                f" {fmt(check.measured, check.unit)} ({limit_text(check)})",
                va="center",
                fontsize=8,
            )
        ax.invert_yaxis()
        ax.set_xlabel(
            "measured as % of its limit (the dashed line); max-checks pass left of it, "
            "min-checks right of it"
        )
        ax.set_title("Every threshold against its limit")
        fig.tight_layout()
        charts.append(_png(fig))
        plt.close(fig)
    return charts


def render_html(
    checks: Sequence[Check],
    stats: RunStats,
    metrics: ServiceMetrics | None,
    meta: Mapping[str, Any],
    history_csv: Path,
    offered: OfferedLoad | None = None,
) -> str:
    passed = verdict(checks)
    failed = [c for c in checks if not c.passed]
    lead = (
        f"All {len(checks)} checks passed."
        if passed
        else f"{len(failed)} of {len(checks)} checks failed: "
        + "; ".join(f"{c.name} ({margin(c)})" for c in failed)
    )
    thresholds = _table(
        ("check", "limit", "measured", "result", "margin", "note"),
        [
            (c.name, limit_text(c), fmt(c.measured, c.unit), result(c), margin(c), c.note)
            for c in checks
        ],
        [result(c) for c in checks],
    )
    routes = _table(
        ("route", "requests", "failures", "req/s", "median ms", "p95 ms", "p99 ms", "max ms"),
        [
            (
                r.key,
                str(r.requests),
                str(r.failures),
                f"{r.rps:.1f}",
                f"{r.median_ms:.0f}",
                f"{r.p95_ms:.0f}",
                f"{r.p99_ms:.0f}",
                f"{r.max_ms:.0f}",
            )
            for r in (*sorted(stats.routes, key=lambda r: -r.requests), stats.total)
        ],
    )
    service = (
        "<p>The service's /metrics could not be scraped.</p>"
        if metrics is None
        else _table(
            ("service metric (delta over the run)", "value"),
            service_rows(metrics),
        )
    )
    settings = "".join(
        f"<li>{html.escape(str(k))}: <code>{html.escape(str(v))}</code></li>"
        for k, v in meta.items()
    )
    word = "PASS" if passed else "FAIL"
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>Load-test gate: {word}</title><style>{_STYLE}</style></head><body>",
            f'<h1 class="{word.lower()}">Load-test gate: {word}</h1>',
            f'<p class="lead">{html.escape(lead)}</p>',
            "<h2>Thresholds</h2>",
            thresholds,
            "<h2>Run</h2>",
            f'<ul class="meta">{settings}</ul>',
            "<h2>Charts</h2>",
            *_charts(checks, history_csv, offered),
            "<h2>Routes (client side, Locust)</h2>",
            routes,
            "<h2>Service (server side, /metrics)</h2>",
            service,
            '<p>Locust\'s own report of this run: <a href="locust.html">locust.html</a>.</p>',
            "</body></html>",
        ]
    )


def write_html(out_dir: Path, **kwargs: Any) -> Path:
    path = out_dir / "report.html"
    path.write_text(render_html(history_csv=out_dir / "locust_stats_history.csv", **kwargs))
    return path
