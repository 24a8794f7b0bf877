"""Run what the chart renders: the migration Job's command, then the Deployment's container
with exactly its rendered env, probed by its rendered probes, stopped the way the kubelet
stops it (pod_lifecycle.run_release). A probe path, port or env var name that the app does
not honour fails here.

What differs from a pod, and why (everything else is the rendered object as is):
- Render inputs, not env overrides: postgres.url / redis.url point at the local servers (a
  test database of our own and Redis DB 3), containerPort is a free local port (BIND is
  derived from it by the chart, so their agreement is still tested), the pool is small
  because the local PostgreSQL is shared (max_connections=100).
- The launcher replaces the emptyDir path /run/prometheus with a temp dir and supplies the
  downward-API fields (pod, namespace, node names); PATH and HOME are the only other vars.
- cwd is the repo root, which holds what the image's WORKDIR /app holds.
- The preStop `sleep N` is done by the test, as the kubelet would, before SIGTERM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import pod_lifecycle, rendered
from .chart import REPO_ROOT, Helm, one, value_files


def app_missing() -> str | None:
    for path in (
        "app/main.py",
        "app/cli.py",
        "gunicorn.conf.py",
        "alembic.ini",
        "migrations/env.py",
    ):
        if not (REPO_ROOT / path).exists():
            return f"the app is not there yet ({path} missing)"
    if not (rendered.venv_bin() / "user-service").exists():
        return "the `user-service` console script is not installed in the venv (pip install -e .)"
    return None


pytestmark = pytest.mark.skipif(app_missing() is not None, reason=app_missing() or "")


@pytest.fixture(scope="module")
def rendered_objects(helm: Helm) -> list[dict[str, Any]]:
    database_url = pod_lifecycle.prepare_local_backends()
    values = pod_lifecycle.run_values(
        database_url, pod_lifecycle.REDIS_URL, pod_lifecycle.free_port()
    )
    return helm.template(value_files("defaults"), values)


def test_rendered_wiring_is_consistent(rendered_objects: list[dict[str, Any]]) -> None:
    """Static half: the numbers the kubelet and the app each read agree with each other."""
    deployment = one(rendered_objects, "Deployment")
    spec = rendered.container_spec(rendered_objects, deployment, downward=pod_lifecycle.DOWNWARD)
    port = spec.ports["http"]
    assert spec.env["BIND"].rsplit(":", 1)[1] == str(port)
    assert {p.port for p in spec.probes.values()} == {port}
    assert spec.env["PROMETHEUS_MULTIPROC_DIR"] in spec.empty_dirs
    service = one(rendered_objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert spec.run_as_user == 10001 and spec.read_only_root


def test_run_what_the_chart_renders(rendered_objects: list[dict[str, Any]], tmp_path: Path) -> None:
    app = pod_lifecycle.run_release(rendered_objects, rendered.LocalLauncher(log_dir=tmp_path))
    # Nothing but the emptyDir stand-in differs from the rendered env.
    assert app.overrides.keys() == {"PROMETHEUS_MULTIPROC_DIR"}, app.overrides
