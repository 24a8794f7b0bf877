"""gunicorn settings for user-service, all from the environment (see README, "Configuration")."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name}: expected an integer, got {raw!r}") from None


def _settings() -> Any:
    """The app's Settings, the one reader of the variables they share with gunicorn."""
    from pydantic import ValidationError

    from app.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise SystemExit(f"configuration error: {problems}") from None


_SETTINGS = _settings()

# Without a Redis the cache, rate limits and revocations live in process memory, which
# only makes sense in one process.
_embedded = not (os.environ.get("REDIS_URL") or os.environ.get("REDIS_URL_FILE"))

_public = os.environ.get("BIND", "0.0.0.0:8000")
bind = [_public]
if _SETTINGS.metrics_enabled:
    # The metrics port on the public address's interface (all of them for a unix socket).
    _host, _, _port = _public.rpartition(":")
    if _public.startswith("unix:") or not _host:
        _host = "0.0.0.0"  # noqa: S104 - a pod is reached on its IP; the NetworkPolicy limits who
    if _port == str(_SETTINGS.metrics_port):
        raise SystemExit(
            f"configuration error: METRICS_PORT ({_SETTINGS.metrics_port}) must differ from the "
            f"port of BIND ({_public}): metrics are never served on the public port"
        )
    bind.append(f"{_host}:{_SETTINGS.metrics_port}")
workers = 1 if _embedded else max(1, _env_int("WEB_CONCURRENCY", 2))
worker_class = "app.worker.DrainingUvicornWorker"
timeout = _env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 20)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
# gunicorn takes the comma list as a string and hands it to uvicorn's proxy-headers handling.
forwarded_allow_ips = ",".join(_SETTINGS.forwarded_allow_ips)
# Each worker builds its own app, engine, Redis pool and tracer provider after the fork.
preload_app = False
accesslog = None
proc_name = "user-service"
# gunicorn's runtime control socket lives under $HOME, which is read-only in the container.
control_socket_disable = True

# Prometheus multiprocess mode: every worker writes samples into this directory.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="user-service-metrics-")

from app.observability.logging import gunicorn_logconfig  # noqa: E402

logconfig_dict = gunicorn_logconfig(
    os.environ.get("LOG_LEVEL", "INFO").upper(), os.environ.get("LOG_FORMAT", "auto")
)

# Import the application's modules once in the master (after PROMETHEUS_MULTIPROC_DIR is
# set): workers inherit them through fork, so a replacement worker starts in about a second
# instead of re-importing everything, and the pages are shared. Nothing is *created* here:
# the app, its pools and its tracer provider are still built in each worker.
import app.main  # noqa: E402, F401


def on_starting(_server: Any) -> None:
    # Files left by a previous run would be summed into this run's counters.
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if directory.exists():
        for entry in directory.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def pre_fork(_server: Any, _worker: Any) -> None:
    # The imported modules live as long as the process: frozen just before the fork, they
    # are skipped by every collection in the worker. Its full collections (queued spans at
    # sampling 1.0 set one off every few thousand requests) then walk what the worker made,
    # not ~150k module objects, and never write into the pages it shares with the master.
    gc.collect()
    gc.freeze()
    # A worker's young generation is collected after this many more allocations than frees.
    # At the default (700) the spans queued between two exports (a batch of 512 holds some
    # 8000 objects) set off a young collection every ~17 sampled requests and an older one
    # every ~190: 15-20 us of CPU per request at sampling 1.0 and pauses of about 1 ms.
    # Request-scoped objects are freed by reference counting and never count towards it.
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    # A worker's event loop shares the GIL with its span export and metrics flush threads.
    # When the loop wakes from its I/O wait while one of them runs (an export's POST of 512
    # spans is a millisecond or more of CPU), it waits up to a whole switch interval for the
    # GIL, and again at its next wake-up: at the default 5 ms every export stalled the loop
    # for tens of ms.
    # Half a millisecond bounds each wait; while no other thread runs nothing changes.
    sys.setswitchinterval(LOOP_GIL_SWITCH_INTERVAL_SECONDS)


# Above what a full export batch of spans keeps alive; inherited by each worker.
YOUNG_COLLECTION_THRESHOLD = 10_000
# Kept across the fork (the interpreter's own state), so it holds in each worker.
LOOP_GIL_SWITCH_INTERVAL_SECONDS = 0.0005


def worker_exit(_server: Any, _worker: Any) -> None:
    # In a worker that leaves through gunicorn's own exit path (a failed start-up, whose
    # lifespan never reached its end; max_requests): what it counted reaches its files. A
    # SIGTERMed worker dies by the signal uvicorn re-raises, after its lifespan's flush.
    from app.observability import metric_values

    metric_values.flush()


def child_exit(_server: Any, worker: Any) -> None:
    # Drop the dead worker's live gauges; its counters stay so totals never go backwards.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
