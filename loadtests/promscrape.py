"""Scrape /metrics before and after a run; read counters and histograms as deltas."""

from __future__ import annotations

import math
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# Names from the service's metric contract (app/observability/metrics.py).
CACHE_REQUESTS = "user_service_cache_requests_total"
POOL_WAIT = "user_service_db_pool_checkout_wait_seconds"
POOL_TIMEOUTS = "user_service_db_pool_checkout_timeouts_total"
HTTP_REQUESTS = "http_requests_total"
LOOP_LAG = "user_service_event_loop_lag_seconds"
# The service serves /metrics on its own port (METRICS_PORT), never on the public one.
DEFAULT_METRICS_PORT = 9464

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Snapshot:
    """Every sample of one scrape, keyed by sample name and label set."""

    samples: Mapping[tuple[str, Labels], float]

    def select(self, name: str, **match: str) -> dict[Labels, float]:
        wanted = set(match.items())
        return {
            labels: value
            for (sample, labels), value in self.samples.items()
            if sample == name and wanted <= labels
        }

    def has(self, name: str) -> bool:
        return any(sample == name for sample, _ in self.samples)


def parse_metrics(text: str) -> Snapshot:
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return Snapshot(samples)


def metrics_base(host: str, port: int = DEFAULT_METRICS_PORT) -> str:
    """The service's metrics port on the host of a base URL: the public port has no /metrics."""
    parts = urllib.parse.urlsplit(host)
    hostname = parts.hostname or ""
    name = f"[{hostname}]" if ":" in hostname else hostname
    return f"{parts.scheme or 'http'}://{name}:{port}"


def scrape(base_url: str, timeout: float = 10.0) -> Snapshot:
    url = base_url.rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return parse_metrics(response.read().decode("utf-8"))


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Add up scrapes of several pods: counters and histogram buckets are additive."""
    total: dict[tuple[str, Labels], float] = {}
    for snapshot in snapshots:
        for key, value in snapshot.samples.items():
            total[key] = total.get(key, 0.0) + value
    return Snapshot(total)


def scrape_all(urls: Iterable[str], timeout: float = 10.0) -> Snapshot:
    return merge(scrape(url, timeout) for url in urls)


def pod_urls(host_port: str, scheme: str = "http") -> list[str]:
    """Every address a name resolves to, as base URLs. A headless Service's name resolves to
    each ready pod, which a Service's virtual IP would hide behind one pod per scrape."""
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {host_port!r}")
    infos = socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_TCP)
    addresses = sorted({str(info[4][0]) for info in infos})
    return [f"{scheme}://[{a}]:{port}" if ":" in a else f"{scheme}://{a}:{port}" for a in addresses]


def counter_delta(before: Snapshot, after: Snapshot, name: str, **match: str) -> float:
    """Increase of a counter (summed over matching label sets) between two scrapes.

    A label set that went down was reset (a worker restarted with a wiped multiprocess
    directory); its value after the reset is all we know it grew by, as Prometheus assumes.
    """
    old = before.select(name, **match)
    total = 0.0
    for labels, value in after.select(name, **match).items():
        previous = old.get(labels, 0.0)
        total += value - previous if value >= previous else value
    return total


def counter_delta_by(
    before: Snapshot, after: Snapshot, name: str, label: str, **match: str
) -> dict[str, float]:
    """Counter increase broken down by one label (for example cache `result`)."""
    values = {dict(labels).get(label, "") for labels in after.select(name, **match)}
    return {
        value: counter_delta(before, after, name, **{**match, label: value}) for value in values
    }


@dataclass(frozen=True)
class HistogramDelta:
    """Cumulative bucket counts of a histogram's increase over the run."""

    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), sorted
    count: float
    sum: float

    def quantile(self, q: float) -> float | None:
        """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    # The answer is past the last finite bucket: report that bound, as
                    # Prometheus does, rather than invent a number.
                    return lower_bound
                in_bucket = cumulative - lower_count
                if in_bucket <= 0:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
            lower_bound, lower_count = bound, cumulative
        return lower_bound

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None


def _bucket_counts(snapshot: Snapshot, name: str, match: dict[str, str]) -> dict[float, float]:
    counts: dict[float, float] = {}
    for labels, value in snapshot.select(f"{name}_bucket", **match).items():
        bound = float(dict(labels)["le"])
        counts[bound] = counts.get(bound, 0.0) + value
    return counts


def histogram_delta(before: Snapshot, after: Snapshot, name: str, **match: str) -> HistogramDelta:
    old = _bucket_counts(before, name, match)
    new = _bucket_counts(after, name, match)
    buckets = tuple((bound, max(new[bound] - old.get(bound, 0.0), 0.0)) for bound in sorted(new))
    return HistogramDelta(
        buckets=buckets,
        count=max(counter_delta(before, after, f"{name}_count", **match), 0.0),
        sum=max(counter_delta(before, after, f"{name}_sum", **match), 0.0),
    )


def missing_metrics(snapshot: Snapshot, names: Iterable[str]) -> list[str]:
    """Contract names the service did not export (the gate reports them as failures)."""
    return [name for name in names if not snapshot.has(name)]
