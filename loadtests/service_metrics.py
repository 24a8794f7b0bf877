"""What the service itself saw during a run: cache results and pool waits from two scrapes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from loadtests import promscrape
from loadtests.promscrape import Snapshot

CACHE_RESULTS = ("hit", "miss", "error", "bypass")


@dataclass(frozen=True)
class ServiceMetrics:
    cache: dict[str, float]  # result -> count over the run
    pool_wait_p95_ms: float | None
    pool_wait_p99_ms: float | None
    pool_wait_mean_ms: float | None
    pool_checkouts: float
    pool_timeouts: float
    server_requests: float
    # How late the workers' event loops ran (None: the service does not export it): high
    # while the database waits are low means the pods were short of CPU, not of connections.
    loop_lag_p99_ms: float | None
    missing: tuple[str, ...]  # contract metrics the service did not export

    @property
    def cache_lookups(self) -> float:
        return sum(self.cache.get(result, 0.0) for result in CACHE_RESULTS)

    @property
    def cache_hit_ratio(self) -> float | None:
        """Hits over every lookup: misses, Redis errors and bypasses (cache off) all count
        against it, because each of them sent the read to the database."""
        lookups = self.cache_lookups
        return self.cache.get("hit", 0.0) / lookups if lookups else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cache_hit_ratio"] = self.cache_hit_ratio
        data["missing"] = list(self.missing)
        return data


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def summarise(before: Snapshot, after: Snapshot) -> ServiceMetrics:
    cache = promscrape.counter_delta_by(
        before, after, promscrape.CACHE_REQUESTS, "result", cache="user"
    )
    wait = promscrape.histogram_delta(before, after, promscrape.POOL_WAIT)
    missing = promscrape.missing_metrics(
        after,
        (
            promscrape.CACHE_REQUESTS,
            f"{promscrape.POOL_WAIT}_bucket",
            promscrape.POOL_TIMEOUTS,
        ),
    )
    return ServiceMetrics(
        cache={result: cache.get(result, 0.0) for result in CACHE_RESULTS},
        pool_wait_p95_ms=_ms(wait.quantile(0.95)),
        pool_wait_p99_ms=_ms(wait.quantile(0.99)),
        pool_wait_mean_ms=_ms(wait.mean),
        pool_checkouts=wait.count,
        pool_timeouts=promscrape.counter_delta(before, after, promscrape.POOL_TIMEOUTS),
        server_requests=promscrape.counter_delta(before, after, promscrape.HTTP_REQUESTS),
        loop_lag_p99_ms=_ms(
            promscrape.histogram_delta(before, after, promscrape.LOOP_LAG).quantile(0.99)
        ),
        missing=tuple(missing),
    )
