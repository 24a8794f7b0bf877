"""Prometheus sample values for multiprocess mode, kept in memory and written in batches.

prometheus_client's own multiprocess value writes every inc/set/observe into the worker's
memory-mapped file under a lock: eleven writes per cached request. Here an update changes
only the number in memory and queues the value once; a flush writes the queued values:
every FLUSH_INTERVAL_SECONDS from a daemon thread, before this worker renders a scrape, at
the end of the app's lifespan, on gunicorn's worker exit and at interpreter exit. A thread
rather than an event-loop task because the values belong to the process, not to one app
(tests run several; start-up and the CLI update them outside any loop), and it flushes on
time even while the loop is busy; it is started by the first update after a fork, so the
gunicorn master never forks with it running. The files, keys and layout stay
prometheus_client's, so its MultiProcessCollector, mark_process_dead and the live* gauge
modes read them unchanged. The price: another worker's samples reach a scrape up to one
interval late, and a worker killed outright (SIGKILL, OOM) loses its last interval.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from prometheus_client.mmap_dict import MmapedDict, mmap_key

FLUSH_INTERVAL_SECONDS: Final = 1.0

log = logging.getLogger(__name__)


class ValueStore:
    """One process's values, its files and the thread that flushes them."""

    def __init__(self, directory: str | None = None, interval: float = FLUSH_INTERVAL_SECONDS):
        self._directory = directory
        self.interval = interval
        self.values: list[BufferedValue] = []
        self._files: dict[str, MmapedDict] = {}
        self._new_process()
        me = weakref.ref(self)

        def forked() -> None:
            store = me()
            if store is not None:
                store._forked()

        os.register_at_fork(after_in_child=forked)

    def _new_process(self) -> None:
        # Guards the numbers, dirty flags and `pending`; held only for a few operations.
        self.lock = threading.Lock()
        # Guards the files: one flush at a time, so a later number is never overwritten.
        self._write_lock = threading.Lock()
        self.pending: list[BufferedValue] = []
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = os.getpid()
        # After a fork nothing of this process is in its files yet: its first write writes
        # every value, as prometheus_client does after a fork.
        self._unwritten = False

    def _path(self, prefix: str) -> str:
        directory = self._directory or os.environ["PROMETHEUS_MULTIPROC_DIR"]
        return os.path.join(directory, f"{prefix}_{self._pid}.db")

    def _file(self, prefix: str) -> MmapedDict:
        found = self._files.get(prefix)
        if found is None:
            found = self._files[prefix] = MmapedDict(self._path(prefix))  # type: ignore[no-untyped-call]
        return found

    def _forked(self) -> None:
        """In a new child: its own locks, no thread yet, and every value starts from this
        process id's files (empty unless a dead process had the same id)."""
        for file in self._files.values():
            file.close()  # type: ignore[no-untyped-call]
        self._files = {}
        self._new_process()
        self._unwritten = True
        stored: dict[str, dict[str, tuple[float, float]]] = {}
        for value in self.values:
            if value.prefix not in stored:
                stored[value.prefix] = self._read(value.prefix)
            value._value, value._timestamp = stored[value.prefix].get(value.key, (0.0, 0.0))
            value._dirty = False

    def _read(self, prefix: str) -> dict[str, tuple[float, float]]:
        path = self._path(prefix)
        if not os.path.exists(path):
            return {}
        entries = MmapedDict.read_all_values_from_file(path)  # type: ignore[no-untyped-call]
        return {key: (value, timestamp) for key, value, timestamp, _ in entries}

    def add(self, value: BufferedValue) -> None:
        """Take a new value: its number is what this process's file holds for its key (so a
        counter carries on after a restart under the same process id), its entry written now
        so the series exists from its creation."""
        with self._write_lock:
            self._write_all_if_unwritten()
            number, timestamp = self._file(value.prefix).read_value(value.key)  # type: ignore[no-untyped-call]
            with self.lock:
                value._value, value._timestamp = number, timestamp
                self.values.append(value)

    def start(self) -> None:
        """Start the flushing thread (lock held): the first update of this process does."""
        stop = self._stop
        self.thread = threading.Thread(
            target=self._run, args=(stop,), name="metrics-flush", daemon=True
        )
        self.thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # a full disk must not end the flushing for good
                log.exception("metrics_flush_failed")

    def flush(self) -> None:
        """Write every value changed since the last flush into this process's files."""
        if not self.pending:
            return  # nothing changed: a process that never updated a sample writes no file
        with self._write_lock:
            self._write_all_if_unwritten()
            with self.lock:
                batch, self.pending = self.pending, []
                numbers = [(v.prefix, v.key, v._value, v._timestamp) for v in batch]
                for value in batch:
                    value._dirty = False
            for prefix, key, number, timestamp in numbers:
                self._file(prefix).write_value(key, number, timestamp)  # type: ignore[no-untyped-call]

    def _write_all_if_unwritten(self) -> None:
        if not self._unwritten:
            return
        self._unwritten = False
        with self.lock:
            numbers = [(v.prefix, v.key, v._value, v._timestamp) for v in self.values]
        for prefix, key, number, timestamp in numbers:
            self._file(prefix).write_value(key, number, timestamp)  # type: ignore[no-untyped-call]

    def inc_all(self, values: Sequence[BufferedValue], amounts: Sequence[float]) -> None:
        """Add each amount to its value under one lock: what one request records (ten
        numbers) costs one lock and no metric-method calls."""
        with self.lock:
            pending = self.pending
            for value, amount in zip(values, amounts, strict=True):
                value._value += amount
                if not value._dirty:
                    value._dirty = True
                    pending.append(value)
            if self.thread is None:
                self.start()

    def close(self) -> None:
        """Flush, stop the thread and close the files (at exit, or to start over)."""
        self._stop.set()
        self.flush()
        with self._write_lock:
            for file in self._files.values():
                file.close()  # type: ignore[no-untyped-call]
            self._files = {}


class BufferedValue:
    """One sample's number, in the shape prometheus_client's metrics expect of a value."""

    __slots__ = ("_dirty", "_timestamp", "_value", "key", "prefix")
    _multiprocess: ClassVar[bool] = True
    _store: ClassVar[ValueStore]

    def __init__(
        self,
        typ: str,
        metric_name: str,
        name: str,
        labelnames: list[str],
        labelvalues: list[str],
        help_text: str,
        multiprocess_mode: str = "",
        **_kwargs: Any,
    ) -> None:
        # The file of a gauge depends on how its workers' values combine (livesum, max...).
        self.prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
        self.key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
        self._value = 0.0
        self._timestamp = 0.0
        self._dirty = False
        self._store.add(self)

    def inc(self, amount: float) -> None:
        store = self._store
        with store.lock:
            self._value += amount
            if not self._dirty:
                self._dirty = True
                store.pending.append(self)
                if store.thread is None:
                    store.start()

    def set(self, value: float, timestamp: float | None = None) -> None:
        store = self._store
        with store.lock:
            self._value = value
            self._timestamp = timestamp or 0.0
            if not self._dirty:
                self._dirty = True
                store.pending.append(self)
                if store.thread is None:
                    store.start()

    def get(self) -> float:
        return self._value

    def set_exemplar(self, _exemplar: Any) -> None:
        """Exemplars are not kept in multiprocess mode (as in prometheus_client)."""

    def get_exemplar(self) -> None:
        return None


def value_class(store: ValueStore) -> type[BufferedValue]:
    """A value class whose values live in `store`, for prometheus_client's ValueClass."""

    class StoreValue(BufferedValue):
        __slots__ = ()
        _store = store

    return StoreValue


_installed: ValueStore | None = None


def install() -> None:
    """Use buffered values when prometheus_client chose multiprocess mode (it decides from
    PROMETHEUS_MULTIPROC_DIR at import); call before any metric is created."""
    global _installed
    from prometheus_client import values

    if values.ValueClass is values.MutexValue or _installed is not None:
        return
    _installed = ValueStore()
    values.ValueClass = value_class(_installed)
    atexit.register(_installed.close)


def flush() -> None:
    """Write this process's changed samples now (before a scrape, at a worker's exit)."""
    if _installed is not None:
        _installed.flush()
