"""One row per sweep point: what was set and what was measured, kept as results.csv."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from loadtests.grid import Knobs


@dataclass(frozen=True)
class PointResult:
    point: str
    axes: str  # space-separated axes the point lies on
    workers: int
    pool_size: int
    max_overflow: int
    cache_ttl: int
    pool_timeout: float
    status: str  # "ok", or why the point was not measured ("skipped: ...", "error: ...")
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    reads_p95_ms: float = 0.0
    cache_hit_ratio: float = 0.0
    pool_wait_p95_ms: float = 0.0
    pool_wait_mean_ms: float = 0.0
    pool_checkouts: float = 0.0
    pool_timeouts: float = 0.0
    db_connections_peak: int = 0
    load_average: float = 0.0  # 1-minute load average after the point: how noisy it was
    # CPU per request: steadier than req/s when neighbours share the machine.
    service_cpu_ms_per_request: float = 0.0
    db_cpu_ms_per_request: float = 0.0
    cores: int = 0  # CPUs of the machine the point ran on

    @property
    def knobs(self) -> Knobs:
        return Knobs(
            self.workers, self.pool_size, self.max_overflow, self.cache_ttl, self.pool_timeout
        )

    @property
    def measured(self) -> bool:
        return self.status == "ok"

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    def on(self, axis: str) -> bool:
        return axis in self.axes.split()


_COLUMNS = [f.name for f in fields(PointResult)]


def write_results(path: Path, rows: list[PointResult]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def read_results(path: Path) -> list[PointResult]:
    types = {f.name: str(f.type) for f in fields(PointResult)}
    casts: dict[str, Callable[[str], object]] = {
        "int": lambda v: int(float(v)),
        "float": float,
        "str": str,
    }
    rows: list[PointResult] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            values = {k: casts[types[k]](v) for k, v in raw.items() if k in types}
            rows.append(PointResult(**values))  # type: ignore[arg-type]
    return rows
