"""A steady, bounded load through a Service, and a watch of the Service's endpoints while it runs.

The load keeps a few keep-alive connections busy at a fixed request rate, as a real client
behind a Service does; every request's outcome and latency is kept so a rollout's effect
can be read afterwards. The endpoint watch records, per pod IP, when it stopped being
ready and when it left the EndpointSlice: the drain as kube-proxy sees it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .kube import Cluster


@dataclass
class Outcome:
    at: float
    status: int  # 0: no response (connection error or timeout)
    seconds: float
    error: str = ""


@dataclass
class SteadyLoad:
    """`workers` threads, each sending `rate / workers` requests per second to `url`."""

    url: str
    headers: dict[str, str]
    rate: float = 15.0
    workers: int = 4
    max_seconds: float = 600.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _worker(self) -> None:
        interval = self.workers / self.rate
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(headers=self.headers, timeout=10) as client:
            next_at = time.monotonic()
            while not self._stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    status = client.get(self.url).status_code
                    error = ""
                except httpx.HTTPError as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.outcomes.append(
                        Outcome(started, status, time.monotonic() - started, error)
                    )
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> SteadyLoad:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._worker, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def summary(self) -> dict[str, Any]:
        latencies = sorted(o.seconds for o in self.outcomes)
        return {
            "sent": len(self.outcomes),
            "failed": len(self.failed()),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
            "errors": sorted({o.error or str(o.status) for o in self.failed()}),
        }


@dataclass
class EndpointWatch:
    """Polls the Service's EndpointSlices; remembers when each address went unready and left."""

    cluster: Cluster
    namespace: str
    service: str
    seen: dict[str, float] = field(default_factory=dict)
    unready: dict[str, float] = field(default_factory=dict)
    removed: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            slices = self.cluster.get(
                "endpointslices",
                namespace=self.namespace,
                selector=f"kubernetes.io/service-name={self.service}",
            )
            now = time.monotonic()
            present = set()
            for endpoint in (e for s in slices["items"] for e in s.get("endpoints") or []):
                for address in endpoint["addresses"]:
                    present.add(address)
                    self.seen.setdefault(address, now)
                    if not endpoint.get("conditions", {}).get("ready", False):
                        self.unready.setdefault(address, now)
            for address in self.seen:
                if address not in present:
                    self.removed.setdefault(address, now)
            self._stop.wait(0.5)

    def __enter__(self) -> EndpointWatch:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=20)
