"""A reader of a local service's log waits for a line the worker writes after its response."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.local_service import LocalService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LocalService]:
    # Only the log file matters here; the process stands in for gunicorn and is stopped after.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    log_path = tmp_path / "service.log"
    log_path.write_text('{"event":"startup"}\n')
    try:
        yield LocalService("http://127.0.0.1:1", process, log_path, {}, tmp_path)
    finally:
        process.kill()
        process.wait(10)


def test_logs_with_waits_for_a_line_written_after_the_call(service: LocalService) -> None:
    late = '{"event":"request","request_id":"late-1"}\n'
    assert "late-1" not in service.logs()
    writer = threading.Timer(0.3, lambda: service.log_path.open("a").write(late))
    writer.start()
    try:
        assert service.logs_with("late-1", timeout=30).endswith(late)
    finally:
        writer.join()


def test_logs_with_waits_for_the_whole_line_that_holds_the_text(service: LocalService) -> None:
    # A line can reach the file in two writes; the caller parses whole lines only.
    first, rest = '{"event":"request","request_id":"split-1",', '"status":200}\n'
    with service.log_path.open("a") as log:
        log.write(first)
    writer = threading.Timer(0.3, lambda: service.log_path.open("a").write(rest))
    writer.start()
    try:
        assert service.logs_with("split-1", timeout=30).endswith(first + rest)
    finally:
        writer.join()


def test_logs_with_returns_whole_lines_only(service: LocalService) -> None:
    with service.log_path.open("a") as log:
        log.write('{"event":"request","request_id":"whole-1"}\n{"event":"req')
    assert service.logs_with("whole-1").endswith('"whole-1"}\n')


def test_logs_with_names_the_missing_text_and_the_log_tail(service: LocalService) -> None:
    with pytest.raises(TimeoutError, match=r"(?s)'never-written' not in .*startup"):
        service.logs_with("never-written", timeout=0.2)
