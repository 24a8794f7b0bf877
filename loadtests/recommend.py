"""Pick settings from sweep results: per knob, the cheapest value within reach of the best.

Rules, in order:
1. A point is eligible when it kept errors and pool timeouts within the criteria, its pool
   wait p95 is either small (max_pool_wait_p95_ms) or a small share of the request p95
   (max_pool_wait_share), and its settings fit the connection budget at the replica count.
2. On each axis, values whose score is within `tolerance` of the axis' best eligible value
   count as equal (a shared 2-core machine is noisy), and the cheapest of them wins: fewer
   workers, a smaller pool; for the cache, the higher hit ratio. The score is throughput,
   or where CPU time was read, a CPU-based figure that the neighbours barely move (see
   `_score`).
3. The winners are combined over the baseline. If the combination breaks the budget the
   pool is cut to the largest eligible one that fits; if nothing fits, it says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from loadtests.grid import Knobs
from loadtests.sweep_results import PointResult


@dataclass(frozen=True)
class Criteria:
    max_error_ratio: float = 0.01
    max_pool_timeouts: float = 0
    max_pool_wait_p95_ms: float = 25.0
    # The sweep runs at saturation, where every request queues somewhere; waiting for a
    # connection is a problem only when it is also a large share of the request's time.
    max_pool_wait_share: float = 0.25
    tolerance: float = 0.05
    reserve_connections: int = 10

    @classmethod
    def from_mapping(cls, data: dict[str, float]) -> Criteria:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "reserve_connections" in known:
            known["reserve_connections"] = int(known["reserve_connections"])
        return cls(**known)  # type: ignore[arg-type]


# What the chart counts besides the replicas' pools (helm/user-service, user-service.validate):
# the rollout's surge pod, each worker's readiness connection and the migration Job's one.
SURGE_PODS = 1
PROBE_CONNECTIONS_PER_WORKER = 1
MIGRATION_CONNECTIONS = 1


@dataclass(frozen=True)
class Budget:
    replicas: int
    max_connections: int
    reserve: int

    @property
    def available(self) -> int:
        return self.max_connections - self.reserve

    @staticmethod
    def per_pod(knobs: Knobs) -> int:
        return knobs.workers * (knobs.pool_size + knobs.max_overflow + PROBE_CONNECTIONS_PER_WORKER)

    def needed(self, knobs: Knobs) -> int:
        """(replicas + surge) x workers x (pool + overflow + probe) + migration, as the chart."""
        return (self.replicas + SURGE_PODS) * self.per_pod(knobs) + MIGRATION_CONNECTIONS

    def fits(self, knobs: Knobs) -> bool:
        return self.needed(knobs) <= self.available

    def max_replicas(self, knobs: Knobs) -> int:
        pods = (self.available - MIGRATION_CONNECTIONS) // max(self.per_pod(knobs), 1)
        return max(pods - SURGE_PODS, 0)


@dataclass(frozen=True)
class Recommendation:
    knobs: Knobs | None
    budget: Budget
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fits_budget(self) -> bool:
        return self.knobs is not None and self.budget.fits(self.knobs)


def why_not(row: PointResult, criteria: Criteria, budget: Budget) -> list[str]:
    """Every reason this point cannot be recommended (empty when it can)."""
    if not row.measured:
        return [row.status]
    reasons = []
    if row.error_ratio > criteria.max_error_ratio:
        reasons.append(f"error ratio {row.error_ratio:.3f} > {criteria.max_error_ratio}")
    if row.pool_timeouts > criteria.max_pool_timeouts:
        reasons.append(f"{row.pool_timeouts:.0f} pool timeouts")
    share = row.pool_wait_p95_ms / row.p95_ms if row.p95_ms else 0.0
    if (
        row.pool_wait_p95_ms > criteria.max_pool_wait_p95_ms
        and share > criteria.max_pool_wait_share
    ):
        reasons.append(
            f"pool wait p95 {row.pool_wait_p95_ms:.1f} ms > {criteria.max_pool_wait_p95_ms} ms "
            f"and {share:.0%} of request p95"
        )
    if not budget.fits(row.knobs):
        reasons.append(
            f"needs {budget.needed(row.knobs)} connections at {budget.replicas} replicas "
            f"> {budget.available} available"
        )
    return reasons


def _cost(axis: str, row: PointResult) -> tuple[float, ...]:
    if axis == "workers":
        return (row.workers,)
    if axis == "pool":
        return (row.pool_size + row.max_overflow, row.pool_size)
    # Cache: prefer the higher hit ratio, then the longer TTL (fewer database reads).
    return (-row.cache_hit_ratio, -row.cache_ttl)


def _score(axis: str, rows: Sequence[PointResult]) -> tuple[str, Callable[[PointResult], float]]:
    """What "better" means on an axis (higher is better), and its unit.

    Throughput on a shared machine moves with the neighbours' load by more than the knobs
    move it. Where the sweep read CPU time, the cache is judged by requests per CPU-second
    (service and database together) and the workers by CPU-bound capacity
    (min(workers, cores) / service CPU per request): both hardly move with the noise.
    The pool is about waiting, not CPU, so it stays on throughput, timeouts and wait.
    """
    with_cpu = all(r.service_cpu_ms_per_request > 0 and r.cores > 0 for r in rows)
    if axis == "cache_ttl" and with_cpu:
        return (
            "req per CPU-second",
            lambda r: 1000 / (r.service_cpu_ms_per_request + r.db_cpu_ms_per_request),
        )
    if axis == "workers" and with_cpu:
        return (
            "req/s CPU-bound capacity",
            lambda r: min(r.workers, r.cores) * 1000 / r.service_cpu_ms_per_request,
        )
    return "req/s", lambda r: r.rps


def choose(
    axis: str, rows: Sequence[PointResult], criteria: Criteria, budget: Budget
) -> tuple[PointResult | None, str]:
    on_axis = [r for r in rows if r.on(axis)]
    eligible = [r for r in on_axis if not why_not(r, criteria, budget)]
    if not eligible:
        return None, f"{axis}: no eligible value (kept the baseline)"
    unit, score = _score(axis, eligible)
    best = max(score(r) for r in eligible)
    close = [r for r in eligible if score(r) >= (1 - criteria.tolerance) * best]
    pick = min(close, key=lambda r: _cost(axis, r))
    return pick, explain(axis, pick, unit, score(pick), best, len(close), len(on_axis), criteria)


def explain(
    axis: str,
    pick: PointResult,
    unit: str,
    scored: float,
    best: float,
    close: int,
    measured_values: int,
    criteria: Criteria,
) -> str:
    """The pick, the numbers it was judged on, and how they relate to what was measured."""
    label = pick.knobs.label(axis)
    text = (
        f"{axis}: {label}, the cheapest of the {close} of {measured_values} measured values "
        f"that met the criteria and scored within {criteria.tolerance:.0%} of the best "
        f"({scored:.0f} against {best:.0f} {unit})"
    )
    if unit == "req/s CPU-bound capacity":
        text += (
            f". Capacity is min(workers, cores) x 1000 / service CPU ms per request = "
            f"min({pick.workers}, {pick.cores}) x 1000 / {pick.service_cpu_ms_per_request:.2f} "
            f"= {scored:.0f} req/s, what the workers could serve with the CPU to themselves; "
            f"the run measured {pick.rps:.0f} req/s because the load generator, the database "
            "and the neighbours shared the machine's cores"
        )
    elif unit == "req per CPU-second":
        cpu = pick.service_cpu_ms_per_request + pick.db_cpu_ms_per_request
        text += (
            f". That is 1000 / ({pick.service_cpu_ms_per_request:.2f} service + "
            f"{pick.db_cpu_ms_per_request:.2f} database CPU ms per request = {cpu:.2f}); "
            f"{pick.rps:.0f} req/s were measured, with a cache hit ratio of "
            f"{pick.cache_hit_ratio:.0%}"
        )
    else:
        text += (
            f"; p95 {pick.p95_ms:.0f} ms, pool wait p95 {pick.pool_wait_p95_ms:.1f} ms, "
            f"{pick.pool_timeouts:.0f} pool timeouts, errors {pick.error_ratio:.2%}"
        )
    return text


def recommend(
    rows: Sequence[PointResult],
    baseline: Knobs,
    criteria: Criteria,
    replicas: int,
    max_connections: int,
) -> Recommendation:
    budget = Budget(replicas, max_connections, criteria.reserve_connections)
    knobs = baseline
    reasons: list[str] = []
    warnings: list[str] = []
    for axis in ("workers", "pool", "cache_ttl"):
        if not any(r.on(axis) for r in rows):
            continue
        pick, reason = choose(axis, rows, criteria, budget)
        (reasons if pick else warnings).append(reason)
        if pick is None:
            continue
        if axis == "workers":
            knobs = replace(knobs, workers=pick.workers)
        elif axis == "pool":
            knobs = replace(knobs, pool_size=pick.pool_size, max_overflow=pick.max_overflow)
        else:
            knobs = replace(knobs, cache_ttl=pick.cache_ttl)

    if not budget.fits(knobs):
        # The combination can break the budget even when each winner fitted on its own
        # (say more workers and a bigger pool): shrink the pool, never the replicas.
        fitting = [
            r
            for r in rows
            if r.on("pool")
            and not why_not(r, criteria, budget)
            and budget.fits(replace(knobs, pool_size=r.pool_size, max_overflow=r.max_overflow))
        ]
        if fitting:
            pick = max(fitting, key=lambda r: r.rps)
            knobs = replace(knobs, pool_size=pick.pool_size, max_overflow=pick.max_overflow)
            warnings.append(f"pool cut to {knobs.pool} to fit the connection budget")
        else:
            warnings.append(
                f"no measured setting fits {budget.available} connections at {replicas} "
                f"replicas: lower the replica count or put PgBouncer in front"
            )
            return Recommendation(None, budget, reasons, warnings)
    return Recommendation(knobs, budget, reasons, warnings)
