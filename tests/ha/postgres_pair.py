"""A PostgreSQL primary and a streaming standby of the test's own, in temporary directories on
free loopback ports (initdb, pg_basebackup, pg_ctl), run as the postgres OS user."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.service import free_ports

OS_USER = "postgres"


def _bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    found = candidates[-1] if candidates else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed (Debian package postgresql)")
    return found


class PostgresPair:
    """Primary and standby; commits wait for the standby (synchronous replication), which is
    what makes "no acknowledged write lost" hold when the primary dies without warning."""

    def __init__(self, *, synchronous: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="us-pgpair-"))
        self.primary_port, self.standby_port = free_ports(2)
        self.synchronous = synchronous
        self.primary = self.root / "primary"
        self.standby = self.root / "standby"

    def _run(self, *command: str, timeout: float = 60) -> str:
        user = OS_USER if os.geteuid() == 0 else None
        done = subprocess.run(
            list(command),
            user=user,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}\n{done.stderr}")
        return done.stdout

    def _configure(self, data: Path, port: int) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "60",
            "shared_buffers": "16MB",
            "wal_level": "replica",
            "max_wal_senders": "4",
            "hot_standby": "on",
            "wal_receiver_status_interval": "1s",
            "logging_collector": "off",
        }
        if self.synchronous:
            settings["synchronous_standby_names"] = "'*'"
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# the test pair's own settings\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> PostgresPair:
        if os.geteuid() == 0:
            shutil.chown(self.root, OS_USER, OS_USER)
        self.root.chmod(0o700)
        self._run(_bin("initdb"), "-D", str(self.primary), "-U", "postgres", "--auth=trust", "-N")
        self._configure(self.primary, self.primary_port)
        self.start_node(self.primary)
        self._run(
            _bin("pg_basebackup"),
            "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
            "-D", str(self.standby), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        # The copy carries the primary's port; the standby listens on its own. Promoted, it
        # has no standby of its own to wait for, so it must not wait for one on commit.
        with (self.standby / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"port = {self.standby_port}\nsynchronous_standby_names = ''\n")
        self.start_node(self.standby)
        self._wait_streaming()
        return self

    def _wait_streaming(self, timeout: float = 30) -> None:
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.sql(self.primary_port, "SELECT sync_state FROM pg_stat_replication")
            if state == wanted:
                return
            time.sleep(0.1)
        raise TimeoutError(f"standby not streaming ({wanted}) after {timeout}s: {state!r}")

    def sql(self, port: int, statement: str, database: str = "postgres") -> str:
        return self._run(
            _bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database,
            "-Atc", statement,
        ).strip()  # fmt: skip

    def start_node(self, data: Path) -> None:
        self._run(_bin("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "start")

    def kill_primary(self) -> None:
        """The primary dies at once (no shutdown checkpoint, no last WAL sent)."""
        self._run(_bin("pg_ctl"), "-D", str(self.primary), "-m", "immediate", "-w", "stop")

    def promote_standby(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.standby), "-w", "promote")

    def stop(self) -> None:
        for data in (self.standby, self.primary):
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._run(_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")

    def dsn(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def failover_url(self, database: str) -> str:
        """The service's multi-host URL: both nodes, and only a writable one will do."""
        return (
            f"postgresql+asyncpg://postgres@/{database}?host=127.0.0.1:{self.primary_port}"
            f"&host=127.0.0.1:{self.standby_port}&target_session_attrs=read-write"
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[PostgresPair]:
        try:
            self.start()
            yield self
        finally:
            self.stop()
            shutil.rmtree(self.root, ignore_errors=True)
