"""A Redis Cluster of the test's own: three masters and a replica each, on free loopback ports
(Debian's redis-server, joined with `redis-cli --cluster create`), behind a password."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.ha.redis_processes import RedisProcesses
from tests.support.service import free_ports

PASSWORD = "cluster-test-password"
# A master is failed over after this long without an answer.
NODE_TIMEOUT_MS = 1000


class RedisCluster(RedisProcesses):
    def __init__(self, masters: int = 3) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="us-cluster-"))
        ports = free_ports(masters * 4)
        self.ports = ports[: masters * 2]
        self.bus_ports = dict(zip(self.ports, ports[masters * 2 :], strict=True))
        self.masters = masters
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def nodes_setting(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports[: self.masters])

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=1, decode_responses=True)

    def _start_node(self, port: int) -> None:
        log = (self.directory / f"{port}.log").open("wb")
        self.processes[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(self.bus_ports[port]),
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor",
                "0",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
                "--masterauth",
                PASSWORD,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def start(self) -> RedisCluster:
        for port in self.ports:
            self._start_node(port)
        self._wait(lambda: all(self.client(port).ping() for port in self.ports))
        subprocess.run(
            ["redis-cli", "-a", PASSWORD, "--no-auth-warning", "--cluster", "create",
             *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self._wait(self._settled)
        return self

    def _settled(self) -> bool:
        for port in self.ports:
            info = self.client(port).cluster("info")
            if info.get("cluster_state") != "ok":
                return False
        return len(self.master_ports()) == self.masters and all(
            self.client(port).info("replication")["connected_slaves"] >= 1
            for port in self.master_ports()
        )

    def master_ports(self) -> list[int]:
        masters = []
        for port in self.ports:
            if port in self.processes and self.processes[port].poll() is None:
                with contextlib.suppress(redis.RedisError):
                    if self.client(port).role()[0] == "master":
                        masters.append(port)
        return masters

    def master_of(self, key: str) -> int:
        """The port of the master that serves `key`'s hash slot now."""
        client = self.client(self.master_ports()[0])
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
        raise LookupError(f"no master serves slot {slot}")

    def replica_of(self, master: int) -> int:
        for port in self.ports:
            if port != master and self.processes[port].poll() is None:
                info = self.client(port).info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == master:
                    return port
        raise LookupError(f"no replica of {master}")

    def role(self, port: int) -> str:
        with contextlib.suppress(redis.RedisError):
            return str(self.client(port).role()[0])
        return "down"

    def state_ok(self, port: int) -> bool:
        with contextlib.suppress(redis.RedisError):
            return self.client(port).cluster("info").get("cluster_state") == "ok"
        return False

    @staticmethod
    def _wait(condition: object, timeout: float = 30) -> None:
        assert callable(condition)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, KeyError):
                if condition():
                    return
            time.sleep(0.1)
        raise TimeoutError("the cluster did not settle")
