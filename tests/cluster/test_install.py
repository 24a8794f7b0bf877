"""`helm install` for real: Pod Security, the migration hook, probes, `helm test`, NOTES."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.database import ADMIN_DSN

from .kube import Cluster, CommandError
from .release import Release, ready

PRIVILEGED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: privileged-probe}
spec:
  containers:
    - name: c
      image: localhost/user-service-cluster/pause:1
      securityContext: {privileged: true}
"""


def test_restricted_namespace_refuses_a_privileged_pod(cluster: Cluster, release: Release) -> None:
    # Pod Security admission is live: the same namespace the chart installed into refuses this.
    with pytest.raises(CommandError) as refused:
        cluster.apply(PRIVILEGED_POD, namespace=release.namespace)
    assert 'violates PodSecurity "restricted:latest"' in str(refused.value)


# Run in the pod: for PID 1 (gunicorn's master) and each of its children (the workers), the
# scheduling policy of each of its threads (field 41 of /proc/<pid>/task/<tid>/stat) and the
# shared objects it maps whose name holds "jemalloc".
GUNICORN_PROCESSES = """
import json, os
found = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        parent = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
        if pid != "1" and parent != "1" or int(pid) == os.getpid():
            continue
        tasks = f"/proc/{pid}/task"
        with open(f"/proc/{pid}/maps") as maps:
            found[pid] = {
                "policies": {
                    tid: int(open(f"{tasks}/{tid}/stat").read().rsplit(")", 1)[1].split()[38])
                    for tid in os.listdir(tasks)
                },
                "jemalloc": sorted({line.split()[-1] for line in maps if "jemalloc" in line}),
            }
    except OSError:
        continue
print(json.dumps(found))
"""


def gunicorn_processes(cluster: Cluster, release: Release) -> dict[str, dict[str, Any]]:
    """GUNICORN_PROCESSES, run in the first app pod: its master is "1", its workers the rest."""
    pod = release.app_pods()[0]["metadata"]["name"]
    command = ["exec", "--namespace", release.namespace, pod, "--"]
    result = cluster.kubectl(*command, "python", "-c", GUNICORN_PROCESSES)
    found: dict[str, dict[str, Any]] = json.loads(result.stdout)
    assert "1" in found and len(found) >= 2, result.stdout  # the master and its workers
    return found


def test_password_hashing_threads_run_in_the_idle_class_in_the_pod(
    cluster: Cluster, release: Release
) -> None:
    # The restricted Pod Security context and the runtime's default seccomp profile let a
    # worker move its hashing threads (one started by the start-up warm-up hash) to the idle
    # class without a capability, so a login storm leaves the event loop its CPU.
    workers = {
        pid: facts for pid, facts in gunicorn_processes(cluster, release).items() if pid != "1"
    }
    for pid, facts in workers.items():
        threads = facts["policies"]
        assert threads[pid] != os.SCHED_IDLE, threads  # the event loop's thread
        assert os.SCHED_IDLE in threads.values(), threads


def test_master_and_workers_allocate_with_jemalloc_in_the_pod(
    cluster: Cluster, release: Release
) -> None:
    # The image preloads jemalloc, so a login storm's 64 MiB per hash is not mapped and unmapped
    # in the address space each worker's event loop shares; the chart's env must keep it.
    for pid, facts in gunicorn_processes(cluster, release).items():
        names = [path.rsplit("/", 1)[-1] for path in facts["jemalloc"]]
        assert names == ["libjemalloc.so.2"], (pid, facts["jemalloc"])


def test_migration_hook_created_the_schema_in_a_pod(release: Release) -> None:
    # The database was created empty; only the pre-install Job in the cluster can have migrated it.
    async def revision() -> str | None:
        connection = await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + "/" + release.database)
        try:
            value: str | None = await connection.fetchval("SELECT version_num FROM alembic_version")
            return value
        finally:
            await connection.close()

    assert asyncio.run(revision())
    events = release.cluster.get("events", namespace=release.namespace)["items"]
    job_events = [
        e
        for e in events
        if e["involvedObject"]["kind"] == "Job" and e["involvedObject"]["name"].endswith("-migrate")
    ]
    assert any(e["reason"] == "Completed" for e in job_events), [e["reason"] for e in job_events]


def test_pods_passed_their_real_probes(release: Release) -> None:
    pods = release.app_pods()
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert ready(pod), pod["status"]
        (container,) = pod["status"]["containerStatuses"]
        # started: the startup probe succeeded; ready: the readiness probe (/readyz) did.
        assert container["started"] and container["ready"]
        assert container["restartCount"] == 0
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_service_answers_through_kube_proxy(release: Release) -> None:
    response = httpx.get(release.service_url() + "/readyz", timeout=10)
    assert response.status_code == 200, response.text


def test_helm_test_passes(cluster: Cluster, release: Release) -> None:
    result = cluster.helm(
        "test", release.name, "--namespace", release.namespace, "--timeout", "3m", timeout=240
    )
    assert "Phase:          Succeeded" in result.stdout or "Succeeded" in result.stdout, (
        result.stdout
    )


def test_notes_render(release: Release) -> None:
    assert (
        f"is deployed as {release.fullname} in namespace {release.namespace}"
        in release.install_output
    )
    assert f"helm test {release.name} --namespace {release.namespace}" in release.install_output
