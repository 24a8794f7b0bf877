"""Disruptions: `kubectl drain` against the PodDisruptionBudget, a SIGKILLed pod, and the lone
pod an autoscaled Deployment runs right after install."""

from __future__ import annotations

import json
import time

import pytest

from .kube import Cluster
from .load import EndpointWatch, SteadyLoad
from .release import Release, ready
from .test_rollout import bearer


def test_drain_stops_at_the_disruption_budget(cluster: Cluster, release: Release) -> None:
    url = release.service_url()
    headers = bearer(url, "drain@example.com")
    (node,) = cluster.get("nodes")["items"]
    node_name = node["metadata"]["name"]
    try:
        with SteadyLoad(f"{url}/api/v1/users/me", headers) as load:
            # One node: an evicted pod's replacement cannot be scheduled, so the budget
            # (maxUnavailable 1) must stop the drain with one pod still serving.
            drained = cluster.kubectl(
                "drain",
                node_name,
                "--pod-selector",
                f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=api",
                "--delete-emptydir-data",
                "--timeout=40s",
                check=False,
                timeout=120,
            )
            serving = [
                p
                for p in release.app_pods()
                if ready(p) and not p["metadata"].get("deletionTimestamp")
            ]
            time.sleep(2)
    finally:
        cluster.kubectl("uncordon", node_name)
    print(f"\ndrain under load: {load.summary()}")
    assert drained.returncode != 0
    assert "disruption budget" in drained.stderr, drained.stderr
    assert len(serving) == 1
    assert load.summary()["failed"] == 0, load.summary()
    cluster.wait_until(
        "two ready pods after uncordon",
        lambda: sum(map(ready, release.app_pods())) == 2,
        timeout=180,
    )


def test_sigkilled_pod_is_restarted_and_leaves_the_service(
    cluster: Cluster, release: Release
) -> None:
    if not cluster.local:
        pytest.skip("SIGKILL from the host needs the local cluster's containerd")
    victim = release.app_pods()[0]
    ip = victim["status"]["podIP"]
    restarts = victim["status"]["containerStatuses"][0]["restartCount"]
    container_id = victim["status"]["containerStatuses"][0]["containerID"].removeprefix(
        "containerd://"
    )
    with EndpointWatch(cluster, release.namespace, release.fullname) as watch:
        time.sleep(1.5)
        killed_at = time.monotonic()
        cluster.run(
            "ctr",
            "--address",
            cluster.env["USER_SERVICE_CLUSTER_CONTAINERD"],
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "--signal",
            "SIGKILL",
            container_id,
        )
        cluster.wait_until(
            "the killed pod's endpoint to turn unready",
            lambda: ip in watch.unready,
            timeout=60,
            interval=0.2,
        )
        unready_after = watch.unready[ip] - killed_at

        def restarted() -> bool:
            pod = cluster.get("pod", victim["metadata"]["name"], namespace=release.namespace)
            return bool(
                pod["status"]["containerStatuses"][0]["restartCount"] > restarts and ready(pod)
            )

        cluster.wait_until("the killed container to be restarted and ready", restarted, timeout=180)
    print(f"\nSIGKILL: endpoint unready {unready_after:.1f}s after the kill")
    assert unready_after < 15


def test_budget_protects_the_lone_pod_before_the_autoscaler_syncs(
    cluster: Cluster, release: Release
) -> None:
    """With autoscaling on the Deployment has no replicas field: right after install it runs
    the API default of one pod until the HPA's first sync. The budget must not let an
    eviction take that pod. The HPA is set aside so the Deployment stays at one pod."""
    namespace, name = release.namespace, release.fullname
    hpa = cluster.get("horizontalpodautoscaler", name, namespace=namespace)
    cluster.kubectl("-n", namespace, "delete", "horizontalpodautoscaler", name)
    try:
        cluster.kubectl("-n", namespace, "scale", "deployment", name, "--replicas=1")

        def settled() -> bool:
            # The scaled-away pod fully gone, and the disruption controller has seen it.
            pdb = cluster.get("poddisruptionbudget", name, namespace=namespace)
            status = pdb.get("status", {})
            return (
                len(release.pods("api")) == 1
                and status.get("observedGeneration") == pdb["metadata"]["generation"]
                and status.get("expectedPods") == 1
                and status.get("currentHealthy") == 1
            )

        cluster.wait_until("one pod and a budget that has seen it", settled, timeout=180)
        (lone,) = release.app_pods()
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": lone["metadata"]["name"], "namespace": namespace},
        }
        evicted = cluster.kubectl(
            "create",
            "--raw",
            f"/api/v1/namespaces/{namespace}/pods/{lone['metadata']['name']}/eviction",
            "-f",
            "-",
            input=json.dumps(eviction),
            check=False,
        )
        assert evicted.returncode != 0, "the lone pod was evicted"
        assert "disruption budget" in evicted.stderr, evicted.stderr
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            hpa["metadata"].pop(key, None)
        hpa.pop("status", None)
        cluster.apply(json.dumps(hpa), namespace=namespace)
        cluster.wait_until(
            "the autoscaler to bring back two ready pods",
            lambda: sum(map(ready, release.app_pods())) == 2,
            timeout=180,
        )
