"""gunicorn's master prepares each worker's interpreter right before forking it: it freezes its
imported heap, so the worker's garbage collections skip the modules it inherits, raises the
young generation's threshold above what queued spans keep alive, and shortens the GIL switch
interval, so a worker's event loop never waits long behind its own export thread."""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("gunicorn_conf_heap", REPO / "gunicorn.conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    # Loading the settings imports the app, as the master does; it freezes nothing yet.
    spec.loader.exec_module(conf)
    return conf


def test_the_master_freezes_its_heap_before_each_fork(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = _load_conf(monkeypatch, tmp_path)
    gc.unfreeze()
    thresholds = gc.get_threshold()
    interval = sys.getswitchinterval()
    try:
        conf.pre_fork(None, None)
        # The app's modules and everything they import: far more than a handful of objects.
        assert gc.get_freeze_count() > 50_000
        assert gc.get_freeze_count() >= len(gc.get_objects()) // 2
        assert gc.get_threshold() == (10_000, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)


def test_a_forked_worker_hands_the_gil_over_within_half_a_millisecond(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = _load_conf(monkeypatch, tmp_path)
    thresholds = gc.get_threshold()
    interval = sys.getswitchinterval()
    # The interpreter's default, which gunicorn's master starts with.
    sys.setswitchinterval(0.005)
    try:
        conf.pre_fork(None, None)
        # What the worker sees is what matters: fork as gunicorn does and ask the child.
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            os.write(write_end, repr(sys.getswitchinterval()).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            reported = pipe.read().decode()
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert float(reported) == pytest.approx(0.0005)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
