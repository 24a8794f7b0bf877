"""Renders k8s/user-service.yaml from the chart and k8s/values.yaml: one source, the chart.

python -m scripts.chart.k8s_manifests --write    # regenerate after changing the chart
python -m scripts.chart.k8s_manifests --check    # exit 1 when k8s/ is stale (the test does this)
"""

from __future__ import annotations

import sys

from scripts.chart.generated_file import wants_write, write_or_check
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
    write = wants_write(argv, __doc__)
    status = write_or_check(
        OUTPUT,
        render(Helm(find_helm())),
        write=write,
        stale_message=f"{OUTPUT.relative_to(REPO_ROOT)} is stale: "
        "run python -m scripts.chart.k8s_manifests --write",
    )
    if write:
        print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
