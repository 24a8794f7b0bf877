"""Read Locust's `<prefix>_stats.csv` into per-route numbers the gate and the sweep judge."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class RouteStats:
    method: str
    name: str
    requests: int
    failures: int
    median_ms: float
    mean_ms: float
    max_ms: float
    rps: float
    p95_ms: float
    p99_ms: float

    @property
    def key(self) -> str:
        """The name thresholds use: "<METHOD> <template>" ("Aggregated" for the total)."""
        return self.name if not self.method else f"{self.method} {self.name}"

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RunStats:
    routes: tuple[RouteStats, ...]
    total: RouteStats

    def route(self, key: str) -> RouteStats | None:
        return next((r for r in self.routes if r.key == key), None)


def _float(value: str) -> float:
    # Locust writes "N/A" for percentiles of routes that saw no request.
    try:
        return float(value)
    except ValueError:
        return 0.0


def _row(row: dict[str, str]) -> RouteStats:
    return RouteStats(
        method=row["Type"].strip(),
        name=row["Name"].strip(),
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        median_ms=_float(row["Median Response Time"]),
        mean_ms=_float(row["Average Response Time"]),
        max_ms=_float(row["Max Response Time"]),
        rps=_float(row["Requests/s"]),
        p95_ms=_float(row["95%"]),
        p99_ms=_float(row["99%"]),
    )


def parse_stats(lines: Iterable[str]) -> RunStats:
    routes: list[RouteStats] = []
    total: RouteStats | None = None
    for row in csv.DictReader(lines):
        stats = _row(row)
        if stats.name == AGGREGATED and not stats.method:
            total = stats
        else:
            routes.append(stats)
    if total is None:
        raise ValueError("no Aggregated row: not a Locust stats CSV")
    return RunStats(routes=tuple(routes), total=total)


def read_stats(path: Path) -> RunStats:
    with path.open(newline="", encoding="utf-8") as handle:
        return parse_stats(handle)
