"""The lifecycle the test's own Redis topologies share: servers started as child processes
with their files in a temporary directory, killed one by one or all at once."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Self


class RedisProcesses:
    """A subclass starts its servers in `start`, records each in `processes` by port, and
    keeps its files under `directory`."""

    directory: Path
    processes: dict[int, subprocess.Popen[bytes]]

    def start(self) -> Self:
        raise NotImplementedError

    def kill(self, port: int) -> None:
        process = self.processes.get(port)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(5)

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        try:
            yield self.start()
        finally:
            self.stop()
