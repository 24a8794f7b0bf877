"""A Debian pgbouncer of the test's own on a free loopback port, configured from the package's
stock pgbouncer.ini: only what must differ (port, files, databases, transaction mode) is set."""

from __future__ import annotations

import configparser
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.database import ADMIN_DSN
from tests.support.isolation import database_name
from tests.support.service import free_port

STOCK_CONFIG = Path("/etc/pgbouncer/pgbouncer.ini")
USER = "postgres"
PASSWORD = "pgbouncer-test-password"  # pgbouncer checks it (md5, the stock auth_type)


def _binary() -> str:
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(found).exists():
        raise RuntimeError("pgbouncer is not installed: run scripts/install-ha.sh")
    return found


def stock_settings() -> dict[str, str]:
    """The [pgbouncer] settings the Debian package ships uncommented."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(STOCK_CONFIG.read_text(encoding="utf-8"))
    return dict(parser["pgbouncer"]) if parser.has_section("pgbouncer") else {}


class PgBouncer:
    """pgbouncer in transaction mode in front of the local PostgreSQL.

    `ignore_startup_parameters = extra_float_digits` is the value the stock file suggests and
    most installations turn on; anything else a client sends at startup is refused, as a real
    PgBouncer refuses it. `server_pool_size` makes clients share few server connections.
    """

    def __init__(self, databases: list[str], *, server_pool_size: int = 2) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="us-pgbouncer-"))
        self.databases = [database_name(name) for name in databases]
        self.server_pool_size = server_pool_size
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "pgbouncer.log"

    def url(self, database: str, *, password: str = PASSWORD) -> str:
        return (
            f"postgresql+asyncpg://{USER}:{password}@127.0.0.1:{self.port}/"
            f"{database_name(database)}"
        )

    def _write_config(self) -> Path:
        upstream = ADMIN_DSN.rsplit("/", 1)[0].removeprefix("postgresql://")
        user_host, _, port = upstream.rpartition(":")
        host = user_host.rpartition("@")[2]
        settings = stock_settings()
        settings.update(
            {
                "listen_addr": "127.0.0.1",
                "listen_port": str(self.port),
                "unix_socket_dir": "",
                "logfile": str(self.log_path),
                "pidfile": str(self.directory / "pgbouncer.pid"),
                "auth_file": str(self.directory / "userlist.txt"),
                "pool_mode": "transaction",
                "ignore_startup_parameters": "extra_float_digits",
                "admin_users": USER,
                "stats_users": USER,
            }
        )
        (self.directory / "userlist.txt").write_text(f'"{USER}" "{PASSWORD}"\n')
        lines = ["[databases]"]
        lines += [
            f"{name} = host={host} port={port} dbname={name} user={USER} "
            f"pool_size={self.server_pool_size}"
            for name in self.databases
        ]
        lines += ["", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        path = self.directory / "pgbouncer.ini"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def start(self, timeout: float = 10) -> PgBouncer:
        config = self._write_config()
        # pgbouncer refuses to run as root; the postgres OS user owns nothing it needs here.
        self.directory.chmod(0o777)
        for path in self.directory.iterdir():
            path.chmod(0o666)
        command = [_binary(), str(config)]
        user = "postgres" if _is_root() else None
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=user,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.logs()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"pgbouncer on {self.port} did not start: {self.logs()[-2000:]}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """The pooler dies at once (a crashed or evicted PgBouncer pod)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
        self.process = None
        (self.directory / "pgbouncer.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[PgBouncer]:
        self.start()
        try:
            yield self
        finally:
            self.cleanup()


def _is_root() -> bool:
    import os

    return os.geteuid() == 0
