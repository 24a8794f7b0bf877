"""gunicorn's master freezes its imported heap right before forking a worker, so the worker's
garbage collections skip the modules it inherits, and raises the young generation's
threshold above what queued spans keep alive."""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_master_freezes_its_heap_before_each_fork(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("gunicorn_conf_heap", REPO / "gunicorn.conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    # Loading the settings imports the app, as the master does; it freezes nothing yet.
    spec.loader.exec_module(conf)
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        conf.pre_fork(None, None)
        # The app's modules and everything they import: far more than a handful of objects.
        assert gc.get_freeze_count() > 50_000
        assert gc.get_freeze_count() >= len(gc.get_objects()) // 2
        assert gc.get_threshold() == (10_000, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
