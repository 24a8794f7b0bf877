"""`helm upgrade` that changes a config value while a steady load goes through the Service."""

from __future__ import annotations

import time

import httpx

from .kube import Cluster
from .load import EndpointWatch, SteadyLoad
from .release import Release

PASSWORD = "cluster-rollout-password"


def bearer(url: str, email: str) -> dict[str, str]:
    created = httpx.post(
        f"{url}/api/v1/users", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert created.status_code in (201, 409), created.text
    token = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": email, "password": PASSWORD}, timeout=30
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_upgrade_under_load_fails_no_request(cluster: Cluster, release: Release) -> None:
    url = release.service_url()
    headers = bearer(url, "rollout@example.com")
    before = {p["metadata"]["name"]: p["status"]["podIP"] for p in release.app_pods()}

    with (
        EndpointWatch(cluster, release.namespace, release.fullname) as watch,
        SteadyLoad(f"{url}/api/v1/users/me", headers) as load,
    ):
        time.sleep(3)
        upgrade_started = time.monotonic()
        release.upgrade(config={"DB_SLOW_QUERY_MS": 250})
        upgrade_seconds = time.monotonic() - upgrade_started
        # Old pods still draining after --wait returned are part of the rollout too.
        cluster.wait_until(
            "the old pods to be gone",
            lambda: not set(before) & {p["metadata"]["name"] for p in release.pods("api")},
            timeout=120,
        )
        time.sleep(3)

    summary = load.summary()
    drains = {
        ip: {
            "unready_after_s": round(watch.unready[ip] - upgrade_started, 1)
            if ip in watch.unready
            else None,
            "removed_after_s": round(watch.removed[ip] - upgrade_started, 1)
            if ip in watch.removed
            else None,
        }
        for ip in before.values()
    }
    print(
        f"\nrollout under load: {summary}; helm upgrade --wait took {upgrade_seconds:.1f}s;"
        f" old pods' endpoints: {drains}"
    )

    after = release.app_pods()
    assert len(after) == 2 and not set(before) & {p["metadata"]["name"] for p in after}
    configmap = cluster.get("configmap", release.fullname, namespace=release.namespace)
    assert configmap["data"]["DB_SLOW_QUERY_MS"] == "250"
    assert summary["sent"] > 100
    assert summary["failed"] == 0, summary
