"""The cluster, brought up once for this package's tests and taken down when they are done,
and the release most tests share (installed with the chart's default hooks)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.dashboards.traffic import INTROSPECTION_CLIENT

from . import kube
from .kube import Cluster
from .release import Release, restricted_namespace

# The shared release goes through install, rollout and disruptions in this order (a SIGKILL
# before the probe checks would show up as a restart), then Prometheus watches it; the
# modules with releases of their own come after.
ORDER = ["test_install", "test_rollout", "test_disruption", "test_prometheus", "test_gitops"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slots = [
        i for i, item in enumerate(items) if "tests/cluster/" in str(item.path).replace(os.sep, "/")
    ]

    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        return ORDER.index(name) if name in ORDER else len(ORDER)

    ordered = sorted((items[i] for i in slots), key=rank)
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0 and not os.environ.get("KUBECONFIG"):
        pytest.skip("the local cluster needs root (netns, iptables, cgroups), or set KUBECONFIG")
    started = kube.start()
    try:
        yield started
    finally:
        kube.stop(started)
        for step, seconds in started.timings.items():
            print(f"cluster: {step} took {seconds:.1f}s")


@pytest.fixture(scope="package")
def release(cluster: Cluster) -> Iterator[Release]:
    """`helm install` into a restricted namespace; its output (NOTES) is on `install_output`."""
    restricted_namespace(cluster, "users")
    installed = Release(cluster, name="users", namespace="users", redis_db=1)
    # A service client, as another service verifying tokens has: the dashboards'
    # introspection panels need its traffic.
    installed.install(introspection={"clients": [":".join(INTROSPECTION_CLIENT)]})
    try:
        yield installed
    finally:
        installed.uninstall()
        cluster.kubectl("delete", "namespace", "users", "--wait=false", check=False)
