"""The release gate's thresholds: parse the versioned TOML file into typed limits."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_VERSIONS = frozenset({1})

_GLOBAL_KEYS = frozenset(
    {
        "max_error_ratio",
        "min_throughput_rps",
        "min_throughput_of_offered",
        "min_cache_hit_ratio",
        "max_pool_wait_p95_ms",
        "max_pool_timeouts",
    }
)
_GROUP_KEYS = frozenset({"routes", "p95_ms", "p99_ms", "optional"})


class ThresholdsError(ValueError):
    """The thresholds file is malformed; the gate refuses to run rather than pass silently."""


@dataclass(frozen=True)
class RouteGroup:
    name: str
    routes: tuple[str, ...]
    p95_ms: float | None = None
    p99_ms: float | None = None
    # An optional group with no requests is skipped instead of failed (for example the admin
    # journey, which runs only when admin credentials were given).
    optional: bool = False


@dataclass(frozen=True)
class Thresholds:
    version: int
    min_requests: int = 0
    max_error_ratio: float | None = None
    min_throughput_rps: float | None = None
    min_throughput_of_offered: float | None = None
    min_cache_hit_ratio: float | None = None
    max_pool_wait_p95_ms: float | None = None
    max_pool_timeouts: float | None = None
    groups: tuple[RouteGroup, ...] = field(default_factory=tuple)


def _number(value: Any, where: str) -> float:
    # bool is an int subclass: `true` in a thresholds file is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ThresholdsError(f"{where}: expected a number, got {value!r}")
    if value < 0:
        raise ThresholdsError(f"{where}: must not be negative, got {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ThresholdsError(f"{where}: expected true or false, got {value!r}")
    return value


def _ratio(value: Any, where: str) -> float:
    number = _number(value, where)
    if number > 1:
        raise ThresholdsError(f"{where}: a ratio is between 0 and 1, got {value!r}")
    return number


def parse_thresholds(data: dict[str, Any]) -> Thresholds:
    version = data.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise ThresholdsError(
            f"version: expected one of {sorted(SUPPORTED_VERSIONS)}, got {version!r}"
        )
    unknown_top = set(data) - {"version", "run", "global", "groups"}
    if unknown_top:
        raise ThresholdsError(f"unknown top-level keys: {sorted(unknown_top)}")

    run = data.get("run", {})
    min_requests = int(_number(run.get("min_requests", 0), "run.min_requests"))

    glob = data.get("global", {})
    unknown = set(glob) - _GLOBAL_KEYS
    if unknown:
        # A misspelt key would otherwise disable its check without anyone noticing.
        raise ThresholdsError(f"global: unknown keys {sorted(unknown)}")

    def opt(key: str, ratio: bool = False) -> float | None:
        if key not in glob:
            return None
        check = _ratio if ratio else _number
        return check(glob[key], f"global.{key}")

    groups: list[RouteGroup] = []
    for name, spec in data.get("groups", {}).items():
        if not isinstance(spec, dict):
            raise ThresholdsError(f"groups.{name}: expected a table")
        unknown = set(spec) - _GROUP_KEYS
        if unknown:
            raise ThresholdsError(f"groups.{name}: unknown keys {sorted(unknown)}")
        routes = spec.get("routes")
        if not routes or not all(isinstance(r, str) for r in routes):
            raise ThresholdsError(f"groups.{name}.routes: expected a non-empty list of names")
        groups.append(
            RouteGroup(
                name=name,
                routes=tuple(routes),
                p95_ms=_number(spec["p95_ms"], f"groups.{name}.p95_ms")
                if "p95_ms" in spec
                else None,
                p99_ms=_number(spec["p99_ms"], f"groups.{name}.p99_ms")
                if "p99_ms" in spec
                else None,
                optional=_flag(spec.get("optional", False), f"groups.{name}.optional"),
            )
        )

    return Thresholds(
        version=int(version),
        min_requests=min_requests,
        max_error_ratio=opt("max_error_ratio", ratio=True),
        min_throughput_rps=opt("min_throughput_rps"),
        min_throughput_of_offered=opt("min_throughput_of_offered", ratio=True),
        min_cache_hit_ratio=opt("min_cache_hit_ratio", ratio=True),
        max_pool_wait_p95_ms=opt("max_pool_wait_p95_ms"),
        max_pool_timeouts=opt("max_pool_timeouts"),
        groups=tuple(groups),
    )


def load_thresholds(path: Path) -> Thresholds:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdsError(f"{path}: {exc}") from exc
    return parse_thresholds(data)
