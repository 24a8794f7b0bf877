"""A Redis master, its replica and three Sentinels of the test's own, on free loopback ports
(Debian's redis-server and redis-sentinel), all behind passwords as in production."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.ha.redis_processes import RedisProcesses
from tests.support.service import free_ports

MASTER_NAME = "mymaster"
PASSWORD = "sentinel-test-data-password"
SENTINEL_PASSWORD = "sentinel-test-sentinel-password"
# Sentinels call a master down after this long without an answer (the charts' default is
# far longer; shorter keeps the test quick and the figures comparable run to run).
DOWN_AFTER_MS = 1000


def _wait_ping(port: int, password: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if redis.Redis(port=port, password=password, socket_timeout=0.5).ping():
                return
        time.sleep(0.05)
    raise TimeoutError(f"redis on {port} did not answer")


class SentinelSet(RedisProcesses):
    def __init__(self, sentinels: int = 3) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="us-sentinel-"))
        self.master_port, self.replica_port, *self.sentinel_ports = free_ports(2 + sentinels)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def sentinels_setting(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _spawn(self, port: int, command: list[str]) -> None:
        log = (self.directory / f"{port}.log").open("wb")
        self.processes[port] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _start_server(self, port: int, replica_of: int | None) -> None:
        command = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            "--dbfilename", f"dump-{port}.rdb",
            "--requirepass", PASSWORD, "--masterauth", PASSWORD,
        ]  # fmt: skip
        if replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(port, command)
        _wait_ping(port, PASSWORD)

    def _start_sentinel(self, port: int) -> None:
        config = self.directory / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}\n"
            f"sentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n",
            encoding="utf-8",
        )
        binary = shutil.which("redis-sentinel")
        if binary is None:
            raise RuntimeError("redis-sentinel is not installed: run scripts/install-ha.sh")
        self._spawn(port, [binary, str(config)])
        _wait_ping(port, SENTINEL_PASSWORD)

    def start(self) -> SentinelSet:
        self._start_server(self.master_port, None)
        self._start_server(self.replica_port, self.master_port)
        self._wait(lambda: self._replication(self.replica_port).get("master_link_status") == "up")
        for port in self.sentinel_ports:
            self._start_sentinel(port)
        # Every sentinel knows the replica and the other sentinels before any fault.
        self._wait(self._sentinels_agree)
        return self

    def _replication(self, port: int) -> dict[str, object]:
        info: dict[str, object] = redis.Redis(port=port, password=PASSWORD).info("replication")
        return info

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, password=SENTINEL_PASSWORD, decode_responses=True)
            master = client.sentinel_master(MASTER_NAME)
            others = len(self.sentinel_ports) - 1
            if master["num-slaves"] < 1 or master["num-other-sentinels"] < others:
                return False
        return True

    @staticmethod
    def _wait(condition: object, timeout: float = 20) -> None:
        assert callable(condition)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if condition():
                    return
            time.sleep(0.1)
        raise TimeoutError("the sentinel set did not settle")

    def master_address(self) -> tuple[str, int]:
        client = redis.Redis(port=self.sentinel_ports[0], password=SENTINEL_PASSWORD)
        host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        return str(host if isinstance(host, str) else host.decode()), int(port)

    def role(self, port: int) -> str:
        with contextlib.suppress(redis.RedisError):
            role = redis.Redis(port=port, password=PASSWORD, socket_timeout=0.5).role()
            name = role[0]
            return str(name.decode() if isinstance(name, bytes) else name)
        return "down"
