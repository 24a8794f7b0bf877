"""Renders k8s/user-service.yaml from the chart and k8s/values.yaml: one source, the chart.

python -m scripts.chart.k8s_manifests --write    # regenerate after changing the chart
python -m scripts.chart.k8s_manifests --check    # exit 1 when k8s/ is stale (the test does this)
"""

from __future__ import annotations

import argparse
import sys

from scripts.chart.helm import LOWEST_KUBE, REPO_ROOT, Helm, find_helm

K8S_DIR = REPO_ROOT / "k8s"
OUTPUT = K8S_DIR / "base" / "user-service.yaml"
RELEASE = "user-service"
NAMESPACE = "user-service"
HEADER = """\
# GENERATED from helm/user-service with k8s/values.yaml; do not edit.
# Regenerate: python -m scripts.chart.k8s_manifests --write
"""


def render(helm: Helm) -> str:
    # For the lowest Kubernetes the chart supports: plain manifests cannot adapt to the
    # cluster they are applied to, so they carry no field an older API server would refuse.
    body = helm.template_text(
        [K8S_DIR / "values.yaml"],
        kube_version=LOWEST_KUBE,
        release=RELEASE,
        namespace=NAMESPACE,
        include_tests=False,
    )
    return HEADER + body.rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render(Helm(find_helm()))
    if args.write:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}")
        return 0
    if not OUTPUT.exists() or OUTPUT.read_text() != text:
        print(
            f"{OUTPUT.relative_to(REPO_ROOT)} is stale: "
            "run python -m scripts.chart.k8s_manifests --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
