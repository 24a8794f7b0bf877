"""Schema validation of rendered objects: Kubernetes kinds with kubernetes-validate (strict),
Prometheus Operator kinds with the CRDs' openAPIV3Schema."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kv

# kind -> CRD file in the shared schemas folder.
CRD_FILES = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
}


def is_crd_kind(obj: dict[str, Any]) -> bool:
    return str(obj["apiVersion"]).startswith("monitoring.coreos.com/")


# Out-of-tree APIs with no schema on this machine; their shape is asserted by their own tests.
UNSCHEMAED_GROUPS = ("gateway.networking.k8s.io/",)


def has_no_schema(obj: dict[str, Any]) -> bool:
    return str(obj["apiVersion"]).startswith(UNSCHEMAED_GROUPS)


def validate_kubernetes(obj: dict[str, Any], version: str) -> None:
    """Strict: unknown fields fail. A missing schema fails too (kubernetes-validate's CLI
    only warns), since a built-in kind without a schema means a wrong apiVersion."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        raise AssertionError(
            f"{name} invalid for Kubernetes {version}: {path}: {error.message}"
        ) from None
    except kv.SchemaNotFoundError as error:
        raise AssertionError(f"{name}: {error.message}") from None


def _strict(schema: Any) -> Any:
    """The API server prunes fields a structural schema does not name, silently: a typo in a
    ServiceMonitor would vanish. Closing every object that lists properties (and does not
    preserve unknown fields) turns such a typo into a test failure instead."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def crd_schema(path: Path, version: str = "v1") -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: dict[str, Any] = _strict(entry["schema"]["openAPIV3Schema"])
            # metadata is typed only as "object" in CRDs; the API server checks it itself.
            schema["properties"]["metadata"] = {"type": "object"}
            return schema
    raise LookupError(f"{path} has no version {version}")


def validate_crd_object(obj: dict[str, Any], schemas_dir: Path) -> None:
    kind = obj["kind"]
    schema = crd_schema(schemas_dir / CRD_FILES[kind], obj["apiVersion"].split("/")[1])
    # The CRD schema leaves metadata open; apiVersion/kind/metadata/spec are what it types.
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
    assert not errors, f"{kind}/{obj['metadata']['name']}: " + "; ".join(
        f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
    )


# Volume types the restricted Pod Security Standard allows.
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(obj: dict[str, Any]) -> list[str]:
    """What the restricted Pod Security Standard (the namespace label k8s/base sets) would
    reject in a pod template; empty when the object has none or admits."""
    if obj["kind"] == "Pod":
        pod = obj["spec"]
    elif obj["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
        pod = obj["spec"]["template"]["spec"]
    else:
        return []
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    problems = []
    pod_sc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{name}: {flag}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            problems.append(f"{name}: volume {volume['name']} of type {sorted(kinds)}")
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        sc = container.get("securityContext") or {}
        where = f"{name} container {container['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            problems.append(f"{where}: capabilities must drop ALL")
        if set((sc.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: adds capabilities")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot must be true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort")
    return problems
