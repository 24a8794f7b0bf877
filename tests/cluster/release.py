"""A Helm release of the chart in its own namespace, with a database and Redis of its own."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.database import empty_database
from tests.support.isolation import database_name

from .kube import CHART, Cluster

JWT_KEY = "cluster-test-jwt-key-of-at-least-32-characters"
SIGNING_KEY_ENCRYPTION_KEY = "cluster-test-key-encryption-key-of-32-plus-chars"


def restricted_namespace(cluster: Cluster, name: str) -> None:
    """A namespace where Pod Security admission enforces the restricted profile."""
    cluster.apply(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {
                        f"pod-security.kubernetes.io/{mode}": "restricted"
                        for mode in ("enforce", "audit", "warn")
                    },
                },
            }
        )
    )
    # Pods are refused until the namespace's default ServiceAccount exists.
    cluster.wait_until(
        f"the default ServiceAccount in {name}",
        lambda: (
            cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode
            == 0
        ),
        timeout=60,
    )


@dataclass
class Release:
    cluster: Cluster
    name: str
    namespace: str
    redis_db: int
    values: dict[str, Any] = field(default_factory=dict)
    # What `helm install` printed: the rendered NOTES.
    install_output: str = ""

    @property
    def fullname(self) -> str:
        return self.name if "user-service" in self.name else f"{self.name}-user-service"

    @property
    def database(self) -> str:
        return database_name(f"cluster_{self.name.replace('-', '_')}")

    def base_values(self) -> dict[str, Any]:
        """Values pointing the release at the cluster's image, an empty database and Redis."""
        repository, tag = self.cluster.image.rsplit(":", 1)
        # Empty: the migration Job in the cluster is what creates the schema.
        empty_database(self.database)
        return {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
            "postgres": {
                "url": f"postgresql+asyncpg://postgres@{self.cluster.postgres}/{self.database}"
            },
            "redis": {"url": f"redis://{self.cluster.redis}/{self.redis_db}"},
            "jwt": {"secretKey": JWT_KEY},
            "keys": {"encryptionKey": SIGNING_KEY_ENCRYPTION_KEY},
        }

    def _values_file(self, values: dict[str, Any]) -> str:
        with tempfile.NamedTemporaryFile(
            "w", suffix=".yaml", prefix="values-", delete=False
        ) as handle:
            yaml.safe_dump(values, handle)
        return handle.name

    def helm(self, verb: str, values: dict[str, Any], *extra: str, timeout: float = 600) -> str:
        path = self._values_file(values)
        try:
            result = self.cluster.helm(
                verb,
                self.name,
                str(CHART),
                "--namespace",
                self.namespace,
                "--values",
                path,
                "--wait",
                "--timeout",
                "5m",
                *extra,
                timeout=timeout,
            )
        finally:
            Path(path).unlink()
        return result.stdout

    def install(self, **overrides: Any) -> str:
        self.values = _merge(self.base_values(), overrides)
        self.install_output = self.helm("install", self.values)
        self.wait_for_replicas(2)
        return self.install_output

    def wait_for_replicas(self, count: int) -> None:
        """With autoscaling on, the Deployment has no replicas field: `helm install --wait`
        returns with the API default of one pod, and the HPA raises it to its minimum later."""
        self.cluster.wait_until(
            f"{count} ready pods of {self.name}",
            lambda: sum(ready(p) for p in self.app_pods()) == count,
            timeout=180,
        )

    def upgrade(self, **overrides: Any) -> str:
        self.values = _merge(self.values, overrides)
        return self.helm("upgrade", self.values)

    def uninstall(self) -> None:
        self.cluster.helm(
            "uninstall",
            self.name,
            "--namespace",
            self.namespace,
            "--wait",
            "--timeout",
            "3m",
            timeout=300,
        )

    def pods(self, component: str = "") -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.name}"
        if component:
            selector += f",app.kubernetes.io/component={component}"
        items: list[dict[str, Any]] = self.cluster.get(
            "pods", namespace=self.namespace, selector=selector
        )["items"]
        return items

    def app_pods(self) -> list[dict[str, Any]]:
        """The Deployment's pods that are not terminating (no migration, test or load-test pods)."""
        return [p for p in self.pods("api") if not p["metadata"].get("deletionTimestamp")]

    def template(self, show_only: str, *sets: str) -> str:
        """`helm template` of one file with the release's values (and `--set` overrides)."""
        path = self._values_file(self.values)
        try:
            args = ["template", self.name, str(CHART), "--namespace", self.namespace]
            args += ["--values", path, "--show-only", show_only]
            for item in sets:
                args += ["--set", item]
            return self.cluster.helm(*args).stdout
        finally:
            Path(path).unlink()

    def service_url(self) -> str:
        service = self.cluster.get("service", self.fullname, namespace=self.namespace)
        port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
        return f"http://{service['spec']['clusterIP']}:{port}"

    def manifest(self) -> list[dict[str, Any]]:
        out = self.cluster.helm("get", "manifest", self.name, "--namespace", self.namespace).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def status(self) -> dict[str, Any]:
        out = self.cluster.helm(
            "status", self.name, "--namespace", self.namespace, "-o", "json"
        ).stdout
        result: dict[str, Any] = json.loads(out)
        return result


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
