"""A throw-away Prometheus on a free loopback port: Debian's binary scraping one target, or
any binary with a configuration of the caller's (the cluster tests' Kubernetes discovery).

The one-target scrape config adds the target labels a ServiceMonitor would (namespace, service,
pod)
and names the job as the chart's ServiceMonitor relabels it (`user-service`), so the
dashboards and rules are exercised with the label set they meet in a cluster; it scrapes the
metrics port.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.service import free_port

JOB = "user-service"
NAMESPACE = "dashtest"
POD = "user-service-dashtest-0"
SERVICE = "user-service-dashtest"


@dataclass
class PrometheusServer:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, time=f"{at:.3f}")
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def query_range(self, expr: str, start: float, end: float, step: str) -> list[dict[str, Any]]:
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def config(target: str, rule_file: Path) -> dict[str, Any]:
    return {
        # 1s scrapes and evaluations: a minute of traffic gives every rate() enough samples.
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rule_file)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [target],
                        "labels": {"namespace": NAMESPACE, "service": SERVICE, "pod": POD},
                    }
                ],
            }
        ],
    }


def _wait_ready(server: PrometheusServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{server.logs()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"prometheus not ready after {timeout}s:\n{server.logs()[-4000:]}")


@contextmanager
def running_prometheus(target: str, rule_file: Path) -> Iterator[PrometheusServer]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus missing: run scripts/install-promtool.sh")
    with prometheus_with_config(binary, config(target, rule_file)) as server:
        yield server


@contextmanager
def prometheus_with_config(binary: str, settings: dict[str, Any]) -> Iterator[PrometheusServer]:
    """`binary` serving `settings` (a prometheus.yml as a dict) until the block ends."""
    workdir = Path(tempfile.mkdtemp(prefix="us-dash-prom-"))
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    log_path = workdir / "prometheus.log"
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrometheusServer(port, process, log_path)
    try:
        _wait_ready(server, timeout=30)
        yield server
    finally:
        # Stopped by its own pid; SIGTERM lets it close the TSDB cleanly.
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
