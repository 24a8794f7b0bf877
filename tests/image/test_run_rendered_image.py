"""Image mode of "run what the chart renders": the migration Job's command and then the
Deployment's command run inside the built image (tests/deploy/pod_lifecycle.run_release with
the image launcher), with the rendered env, the chart's emptyDir paths the only writable
places, as the non-root user; the probes answer; SIGTERM drains and exits within the grace period.

What differs from the host-process mode: nothing in the env is replaced (the image has the
real /run/prometheus), and cwd, PATH and HOME come from the image, not from the repo.
What differs from a kubelet is listed in scripts/image.sh and the README (no network
namespace, cgroups or seccomp; see the closing note of the image issue).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.deploy import pod_lifecycle, rendered
from tests.deploy.chart import Helm, find_helm, one, value_files
from tests.support.database import empty_database
from tests.support.isolation import redis_url

from .conftest import BuiltImage
from .launcher import ImageLauncher

# The local servers are shared: a database and a Redis DB number of our own.
DATABASE = "user_service_image_test"
REDIS_URL = redis_url(7)


def prepare_local_backends() -> str:
    """An empty database (the migration Job creates the schema) and an empty Redis DB."""
    return empty_database(DATABASE, REDIS_URL)


def render() -> list[dict[str, Any]]:
    # run_values keeps the pool at 2 + 1 per worker: the local PostgreSQL is shared.
    values = pod_lifecycle.run_values(
        prepare_local_backends(), REDIS_URL, pod_lifecycle.free_port()
    )
    return Helm(find_helm()).template(value_files("defaults"), values)


def test_rendered_commands_are_the_image_contract(image: BuiltImage) -> None:
    objects = render()
    for obj in (one(objects, "Deployment"), one(objects, "Job", "migrations")):
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        # The chart always sets command, so ENTRYPOINT and CMD are replaced, never mixed.
        assert container.get("command"), f"{obj['kind']} renders no command"
        assert container["command"][:1] == image.config["Entrypoint"], container["command"]
    spec = rendered.container_spec(
        objects, one(objects, "Deployment"), downward=pod_lifecycle.DOWNWARD
    )
    assert spec.run_as_user == image.uid_gid[0]
    assert spec.argv == image.config["Entrypoint"] + image.config["Cmd"]
    assert set(spec.empty_dirs) == {"/tmp", spec.env["PROMETHEUS_MULTIPROC_DIR"]}


def test_image_runs_what_the_chart_renders(image: BuiltImage, tmp_path: Path) -> None:
    objects = render()
    app = pod_lifecycle.run_release(objects, ImageLauncher(image.name, log_dir=tmp_path))
    assert app.overrides == {}, app.overrides
