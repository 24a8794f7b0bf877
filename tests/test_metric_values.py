"""Buffered multiprocess values: updates stay in memory until a flush writes them, the
flushing thread runs by itself, a forked child writes its own file, and an exiting process
writes what it counted. Real files, read back by prometheus_client's own collector."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from app.observability import metric_values
from app.observability import metrics as service_metrics
from app.observability.metric_values import ValueStore, value_class
from tests.support.service import REPO


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ValueStore]:
    """A store of its own in tmp_path whose thread would wait an hour: only the test flushes.
    Metrics created meanwhile (registry=None, so nothing global) take its values."""
    store = ValueStore(str(tmp_path), interval=3600)
    monkeypatch.setattr(values, "ValueClass", value_class(store))
    yield store
    store.close()


def _scraped(directory: Path, name: str, **labels: str) -> float | None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry.get_sample_value(name, labels)


def test_updates_stay_in_memory_until_a_flush(store: ValueStore, tmp_path: Path) -> None:
    counter = Counter("t_requests", "Requests.", ["route"], registry=None)
    gauge = Gauge("t_busy", "Busy.", multiprocess_mode="livesum", registry=None)
    histogram = Histogram("t_seconds", "Seconds.", buckets=(0.1, 1.0), registry=None)
    child = counter.labels(route="/a")
    # A new series is in the file from its creation, at 0.
    assert _scraped(tmp_path, "t_requests_total", route="/a") == 0
    for _ in range(1000):
        child.inc()
        gauge.inc()
        gauge.dec()
        histogram.observe(0.05)
    gauge.set(3)
    assert _scraped(tmp_path, "t_requests_total", route="/a") == 0
    assert child._value.get() == 1000

    store.flush()
    assert _scraped(tmp_path, "t_requests_total", route="/a") == 1000
    assert _scraped(tmp_path, "t_busy") == 3
    assert _scraped(tmp_path, "t_seconds_bucket", le="0.1") == 1000
    assert _scraped(tmp_path, "t_seconds_count") == 1000


def test_a_flush_writes_each_changed_value_once(
    store: ValueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter("t_hits", "Hits.", registry=None)
    histogram = Histogram("t_wait", "Wait.", buckets=(0.1, 1.0), registry=None)
    written: list[str] = []
    original = MmapedDict.write_value

    def counting(self: MmapedDict, key: str, value: float, timestamp: float) -> None:
        written.append(key)
        original(self, key, value, timestamp)

    monkeypatch.setattr(MmapedDict, "write_value", counting)
    for _ in range(500):
        counter.inc()
        histogram.observe(0.5)
    assert written == []
    store.flush()
    # The counter, the histogram's sum and its one bucket hit: three values, three writes.
    assert len(written) == 3 and len(set(written)) == 3
    store.flush()
    assert len(written) == 3


def test_the_flushing_thread_writes_within_its_interval(tmp_path: Path) -> None:
    store = ValueStore(str(tmp_path), interval=0.05)
    try:
        value = value_class(store)("counter", "t_ticks", "t_ticks_total", [], [], "Ticks.")
        assert store.thread is None  # nothing changed yet: no thread
        value.inc(7)
        assert store.thread is not None and store.thread.daemon
        deadline = time.monotonic() + 10
        while _scraped(tmp_path, "t_ticks_total") != 7 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _scraped(tmp_path, "t_ticks_total") == 7
    finally:
        store.close()


def test_a_forked_child_counts_in_its_own_file(store: ValueStore, tmp_path: Path) -> None:
    counter = Counter("t_forks", "Forks.", registry=None)
    counter.inc(3)
    store.flush()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        started_at = counter._value.get()
        counter.inc(2)
        store.flush()
        os.write(write, f"{started_at}".encode())
        os._exit(0)
    os.close(write)
    started_at = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(child, 0)
    assert float(started_at) == 0  # the child starts from its own (new) file
    assert (tmp_path / f"counter_{child}.db").exists()
    assert counter._value.get() == 3
    assert _scraped(tmp_path, "t_forks_total") == 5


def test_a_process_writes_what_it_counted_when_it_exits(tmp_path: Path) -> None:
    program = (
        "from app.observability import metrics\nmetrics.AUTH_EVENTS.labels(event='logout').inc(4)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert _scraped(tmp_path, "user_service_auth_events_total", event="logout") == 4


def test_without_a_multiprocess_directory_values_stay_prometheus_clients_own() -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert values.ValueClass is values.MutexValue
    assert type(service_metrics.WORKER_PROCESSES._value) is values.MutexValue
    metric_values.flush()  # nothing installed: nothing to do, no error
