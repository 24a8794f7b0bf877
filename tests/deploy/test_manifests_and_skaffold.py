"""k8s/ is the chart rendered (never stale) and applies as kustomizations; skaffold.yaml is
valid for its apiVersion and points at files that exist."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from scripts.chart import k8s_manifests

from .chart import CHART_DIR, HIGHEST_KUBE, LOWEST_KUBE, REPO_ROOT, Helm, parse_objects
from .validation import restricted_violations, validate_kubernetes

K8S = REPO_ROOT / "k8s"


def test_k8s_manifests_are_current(helm: Helm) -> None:
    expected = k8s_manifests.render(helm)
    actual = k8s_manifests.OUTPUT.read_text() if k8s_manifests.OUTPUT.exists() else ""
    assert actual == expected, (
        "k8s/base/user-service.yaml is stale: run python -m scripts.chart.k8s_manifests --write"
    )


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl") or str(REPO_ROOT / ".tools" / "bin" / "kubectl")
    if not Path(kubectl).exists():
        pytest.skip("no kubectl (scripts/install-helm.sh installs one when missing)")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return parse_objects(result.stdout)


@pytest.mark.parametrize("overlay", ["base", "dev"])
def test_kustomizations_build_and_validate(overlay: str) -> None:
    objects = kustomize(K8S / overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "Job"} <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "user-service", obj["metadata"]["name"]
        for version in (LOWEST_KUBE, HIGHEST_KUBE):
            validate_kubernetes(obj, version)
        # The base namespace enforces restricted Pod Security: the dev databases must pass too.
        assert not restricted_violations(obj)
    # No Helm hook may hide in plain manifests: kubectl would apply it as a normal object.
    assert not [o for o in objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]


def test_dev_overlay_supplies_the_secret_the_deployment_names() -> None:
    objects = kustomize(K8S / "dev")
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "user-service"
    )
    refs = {
        e["secretRef"]["name"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        if "secretRef" in e
    }
    assert refs <= set(secrets)
    assert {"DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY"} <= set(secrets["user-service"]["data"])
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert {"postgres", "redis"} <= services


def load_skaffold() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
    return config


def test_skaffold_validates_against_schema(schemas_dir: Path) -> None:
    schema = json.loads((schemas_dir / "skaffold-v4beta14.json").read_text())
    config = load_skaffold()
    assert config["apiVersion"] == "skaffold/v4beta14"
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(config))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    # The schema is strict: a misspelt key would be reported, not ignored.
    broken = {**config, "deploy": {**config["deploy"], "helmm": {}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_skaffold_points_at_real_files(helm: Helm) -> None:
    config = load_skaffold()
    releases = list(config["deploy"]["helm"]["releases"])
    artifacts = list(config["build"]["artifacts"])
    for profile in config["profiles"]:
        releases += profile.get("deploy", {}).get("helm", {}).get("releases", [])
        artifacts += profile.get("build", {}).get("artifacts", [])
        for path in profile.get("manifests", {}).get("kustomize", {}).get("paths", []):
            kustomize(REPO_ROOT / path)
    for release in releases:
        assert (REPO_ROOT / release["chartPath"]).resolve() == CHART_DIR
        files = [REPO_ROOT / f for f in release.get("valuesFiles", [])]
        # Render what skaffold would deploy, with a stand-in for the built image.
        values = {
            k: "registry.local/user-service" if "REPO" in v else "dev"
            for k, v in release.get("setValueTemplates", {}).items()
        }
        extra = [] if files else [REPO_ROOT / "tests" / "deploy" / "values" / "required.yaml"]
        helm.template([*extra, *files], values, namespace=release["namespace"])
    for artifact in artifacts:
        dockerfile = REPO_ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]
        if not dockerfile.exists() and artifact["image"] == "user-service-loadtest":
            continue  # checked (and skipped with a reason) below
        assert dockerfile.exists(), dockerfile


def test_skaffold_loadtest_profile() -> None:
    config = load_skaffold()
    profile = next(p for p in config["profiles"] if p["name"] == "loadtest")
    (case,) = profile["verify"]
    assert case["container"]["command"] == ["python", "-m", "loadtests.gate"]
    args = case["container"]["args"]
    release = config["deploy"]["helm"]["releases"][0]
    # <fullname>.<namespace>.svc:<service.port>: release name == chart name gives fullname.
    chart_values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert args[args.index("--host") + 1] == (
        f"http://{release['name']}.{release['namespace']}.svc:{chart_values['service']['port']}"
    )
    # The load-test image skaffold builds.
    assert (REPO_ROOT / "loadtests" / "Dockerfile").is_file()
