"""The tests' Kubernetes cluster: the local one from scripts/cluster/, or KUBECONFIG's.

`Cluster.start()` brings the local single-node cluster up (the binaries are built once and
cached outside the checkout) and imports the project image; `stop()` takes it down again.
With KUBECONFIG pointing at a reachable cluster (a developer's kind or minikube) nothing is
started or stopped, and the image named by USER_SERVICE_CLUSTER_IMAGE must already be
loadable there.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "cluster" / "cluster.sh"
IMAGE_SCRIPT = REPO / "scripts" / "image.sh"
CHART = REPO / "helm" / "user-service"
# A tag of its own: other work on the machine rebuilding :dev cannot swap the image mid-run.
LOCAL_IMAGE = "localhost/user-service:cluster"


class CommandError(RuntimeError):
    """A kubectl or helm command exited non-zero; the message carries its stderr."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(
            f"{' '.join(args)} exited {returncode}:\n{stderr.strip() or stdout.strip()}"
        )
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


@dataclass
class Cluster:
    """How to reach the cluster, and the host services its pods can reach."""

    env: dict[str, str]
    local: bool
    image: str
    # Host services as pods see them: "host:port".
    postgres: str = ""
    redis: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(list(args), result.returncode, result.stdout, result.stderr)
        return result

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kwargs)

    def helm(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, **kwargs)

    def get(self, kind: str, name: str = "", namespace: str = "", selector: str = "") -> Any:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        return json.loads(self.kubectl(*args).stdout)

    def apply(self, manifest: str, namespace: str = "") -> None:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=manifest)

    def wait_until(self, what: str, probe: Any, timeout: float = 120, interval: float = 1) -> Any:
        """Call `probe` until it returns something truthy; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _reachable(env: dict[str, str]) -> bool:
    result = subprocess.run(
        ["kubectl", "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    return result.returncode == 0


def _tools_path() -> str:
    helm_dir = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-helm.sh")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "USER_SERVICE_HELM_FORCE": "1"},
        timeout=600,
    ).stdout.strip()
    return f"{helm_dir}:{os.environ['PATH']}"


def start() -> Cluster:
    """The cluster KUBECONFIG names when it answers; else bring the local one up."""
    env = {**os.environ, "PATH": _tools_path()}
    if os.environ.get("KUBECONFIG") and _reachable(env):
        return Cluster(
            env=env,
            local=False,
            image=os.environ.get("USER_SERVICE_CLUSTER_IMAGE", LOCAL_IMAGE),
            postgres=os.environ.get("USER_SERVICE_CLUSTER_POSTGRES", ""),
            redis=os.environ.get("USER_SERVICE_CLUSTER_REDIS", ""),
        )
    timings: dict[str, float] = {}
    started = time.monotonic()
    # The image build is cached by buildah's layers: seconds when nothing changed.
    subprocess.run(
        ["bash", str(IMAGE_SCRIPT), "build"],
        check=True,
        capture_output=True,
        timeout=1800,
        env={**os.environ, "IMAGE": LOCAL_IMAGE},
    )
    timings["image build"] = time.monotonic() - started
    started = time.monotonic()
    up = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "up"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    timings["cluster up"] = time.monotonic() - started
    if up.returncode != 0:
        subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), "down"], capture_output=True, timeout=300, check=False
        )
        raise RuntimeError(f"cluster up failed:\n{up.stderr[-4000:]}")
    started = time.monotonic()
    subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "import", LOCAL_IMAGE],
        check=True,
        capture_output=True,
        timeout=600,
    )
    timings["image import"] = time.monotonic() - started
    exports = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "env"], capture_output=True, text=True, check=True
    ).stdout
    values = dict(
        line.removeprefix("export ").split("=", 1)
        for line in exports.splitlines()
        if line.startswith("export ")
    )
    for key, value in values.items():
        env[key] = value.replace("$PATH", env["PATH"]) if key == "PATH" else value
    return Cluster(
        env=env,
        local=True,
        image=LOCAL_IMAGE,
        postgres=values["USER_SERVICE_CLUSTER_POSTGRES"],
        redis=values["USER_SERVICE_CLUSTER_REDIS"],
        timings=timings,
    )


def stop(cluster: Cluster) -> None:
    if cluster.local:
        subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), "down"], check=True, capture_output=True, timeout=300
        )
