"""GitOps mode (no Helm hooks), refusals as helm errors, and an uninstall leaving nothing."""

from __future__ import annotations

import httpx
import pytest

from .kube import Cluster, CommandError
from .release import Release, ready, restricted_namespace

NAMESPACE = "users-gitops"
# Every namespaced kind the chart can render, so "nothing left" is checked across all of them.
KINDS = ",".join(
    [
        "all",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "poddisruptionbudgets",
        "networkpolicies",
        "horizontalpodautoscalers",
        "jobs",
        "roles",
        "rolebindings",
    ]
)


@pytest.fixture(scope="module")
def gitops(cluster: Cluster) -> Release:
    restricted_namespace(cluster, NAMESPACE)
    return Release(cluster, name="gitops", namespace=NAMESPACE, redis_db=2)


def test_install_and_upgrade_without_hooks(cluster: Cluster, gitops: Release) -> None:
    gitops.install(migrations={"useHelmHooks": False})
    # A plain Job (not a hook): it belongs to the release, and the pods turned ready only
    # once it had migrated the schema (/readyz reports "schema": "behind" before).
    jobs = [doc for doc in gitops.manifest() if doc["kind"] == "Job"]
    assert len(jobs) == 1 and "helm.sh/hook" not in jobs[0]["metadata"].get("annotations", {})
    job = cluster.get("job", jobs[0]["metadata"]["name"], namespace=NAMESPACE)
    assert job["status"].get("succeeded") == 1
    assert all(ready(p) for p in gitops.app_pods()) and len(gitops.app_pods()) == 2
    assert httpx.get(gitops.service_url() + "/readyz", timeout=10).status_code == 200

    gitops.upgrade(config={"DB_SLOW_QUERY_MS": 300})
    assert gitops.status()["info"]["status"] == "deployed"
    assert (
        cluster.get("configmap", gitops.fullname, namespace=NAMESPACE)["data"]["DB_SLOW_QUERY_MS"]
        == "300"
    )
    assert all(ready(p) for p in gitops.app_pods())


def test_connection_budget_refusal_is_a_helm_error(gitops: Release) -> None:
    with pytest.raises(CommandError) as refused:
        gitops.upgrade(autoscaling={"maxReplicas": 10})
    assert "connection budget exceeded" in refused.value.stderr
    assert (
        "autoscaling.maxReplicas" in refused.value.stderr or "maxReplicas" in refused.value.stderr
    )
    # The refused upgrade changed nothing in the cluster.
    assert gitops.status()["version"] == 2
    gitops.values["autoscaling"]["maxReplicas"] = 4


def test_bad_value_is_a_helm_error_naming_it(gitops: Release) -> None:
    with pytest.raises(CommandError) as refused:
        gitops.upgrade(replicaCount=-1)
    assert "replicaCount" in refused.value.stderr
    assert gitops.status()["version"] == 2
    gitops.values.pop("replicaCount")


def test_uninstall_leaves_nothing(cluster: Cluster, gitops: Release) -> None:
    gitops.uninstall()

    def left() -> list[str]:
        # Pods of the deleted ReplicaSets and Job go with the garbage collector, after their
        # preStop hook and drain: wait for them rather than call them leftovers too early.
        names: list[str] = cluster.kubectl(
            "get", KINDS, "-n", NAMESPACE, "-o", "name"
        ).stdout.split()
        # What the namespace itself comes with is not the release's.
        return [n for n in names if not n.endswith(("/default", "/kube-root-ca.crt"))]

    cluster.wait_until("nothing of the release left", lambda: not left(), timeout=120)
    helm_secrets = cluster.kubectl(
        "get", "secrets", "-n", NAMESPACE, "-l", "owner=helm", "-o", "name"
    ).stdout.split()
    assert helm_secrets == []
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
