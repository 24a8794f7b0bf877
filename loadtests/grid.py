"""The sweep's grid: the baseline settings and the one-knob-at-a-time points around it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtests.runner import Scenario

AXES = ("workers", "pool", "cache_ttl")


class GridError(ValueError):
    pass


@dataclass(frozen=True)
class Knobs:
    workers: int
    pool_size: int
    max_overflow: int
    cache_ttl: int  # 0 means the cache is off
    pool_timeout: float

    @property
    def pool(self) -> str:
        return f"{self.pool_size}+{self.max_overflow}"

    @property
    def connections_per_replica(self) -> int:
        return self.workers * (self.pool_size + self.max_overflow)

    @property
    def cache_label(self) -> str:
        return "off" if self.cache_ttl == 0 else f"ttl {self.cache_ttl}s"

    def env(self) -> dict[str, str]:
        """The service's environment variables for these settings (the app's contract)."""
        env = {
            "WEB_CONCURRENCY": str(self.workers),
            "DB_POOL_SIZE": str(self.pool_size),
            "DB_MAX_OVERFLOW": str(self.max_overflow),
            "DB_POOL_TIMEOUT": str(self.pool_timeout),
            "CACHE_ENABLED": "false" if self.cache_ttl == 0 else "true",
        }
        if self.cache_ttl:
            env["CACHE_TTL_SECONDS"] = str(self.cache_ttl)
        return env

    def label(self, axis: str) -> str:
        return {"workers": str(self.workers), "pool": self.pool, "cache_ttl": self.cache_label}[
            axis
        ]


@dataclass(frozen=True)
class Point:
    name: str
    knobs: Knobs
    axes: tuple[str, ...]  # every axis this point lies on (the baseline lies on several)


@dataclass(frozen=True)
class Grid:
    scenario: Scenario
    baseline: Knobs
    axes: dict[str, tuple[Knobs, ...]]  # axis -> its points in order, with the axis' overrides
    criteria: dict[str, float] = field(default_factory=dict)

    def points(self) -> list[Point]:
        """Unique settings to run, each once, in a stable order (baseline first)."""
        order: list[Knobs] = [self.baseline]
        on: dict[Knobs, list[str]] = {self.baseline: []}
        for axis, knobs_list in self.axes.items():
            for knobs in knobs_list:
                if knobs not in on:
                    order.append(knobs)
                    on[knobs] = []
                on[knobs].append(axis)
        return [Point(name=f"p{i:02d}", knobs=k, axes=tuple(on[k])) for i, k in enumerate(order)]


def _apply(knobs: Knobs, axis: str, value: Any) -> Knobs:
    if axis == "workers":
        return replace(knobs, workers=int(value))
    if axis == "cache_ttl":
        return replace(knobs, cache_ttl=int(value))
    if axis == "pool":
        size, _, overflow = str(value).partition("+")
        try:
            return replace(knobs, pool_size=int(size), max_overflow=int(overflow or 0))
        except ValueError as exc:
            raise GridError(f"pool value {value!r}: expected '<size>+<overflow>'") from exc
    if axis in ("pool_size", "max_overflow", "pool_timeout"):
        return replace(knobs, **{axis: type(getattr(knobs, axis))(value)})
    raise GridError(f"unknown knob {axis!r}")


def parse_grid(data: dict[str, Any]) -> Grid:
    if data.get("version") != 1:
        raise GridError(f"version: expected 1, got {data.get('version')!r}")
    scenario = Scenario(**data.get("scenario", {}))
    base = data.get("baseline", {})
    baseline = Knobs(
        workers=int(base.get("workers", 2)),
        pool_size=int(base.get("pool_size", 5)),
        max_overflow=int(base.get("max_overflow", 5)),
        cache_ttl=int(base.get("cache_ttl", 300)),
        pool_timeout=float(base.get("pool_timeout", 5)),
    )
    axes: dict[str, tuple[Knobs, ...]] = {}
    for axis, spec in data.get("axes", {}).items():
        if axis not in AXES:
            raise GridError(f"axes.{axis}: unknown axis (known: {', '.join(AXES)})")
        start = baseline
        for key, value in spec.get("with", {}).items():
            start = _apply(start, key, value)
        values = spec.get("values") or []
        if not values:
            raise GridError(f"axes.{axis}.values: empty")
        axes[axis] = tuple(_apply(start, axis, v) for v in values)
    criteria = {k: float(v) for k, v in data.get("criteria", {}).items()}
    return Grid(scenario=scenario, baseline=baseline, axes=axes, criteria=criteria)


def load_grid(path: Path) -> Grid:
    return parse_grid(tomllib.loads(path.read_text(encoding="utf-8")))
