"""The image launcher for tests/deploy/rendered.py's Launcher seam: runs a rendered container
inside the built image through `scripts/image.sh run`, as a pod would run it.

What the container gets: the image's USER (or the rendered runAsUser), WORKDIR, ENV and
STOPSIGNAL from the image config; the rendered command/args and env on top, unchanged; a
read-only root with a tmpfs on each of the rendered emptyDir mount paths and nothing else
writable; the host network (so it reaches the local PostgreSQL and Redis).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.rendered import ContainerSpec, LocalProcess

from .conftest import IMAGE, IMAGE_SH


@dataclass
class ImageProcess(LocalProcess):
    """The image.sh process that holds the container. SIGTERM is forwarded by image.sh to the
    container's PID 1 as the image's STOPSIGNAL; only killing differs from a local process."""

    # Nothing is changed from the rendered env: the image has the real emptyDir paths.
    overrides: dict[str, str] = field(default_factory=dict)

    def kill(self) -> None:
        if self.popen.poll() is not None:
            return
        # SIGUSR1: image.sh SIGKILLs PID 1 (as after the grace period) and removes its container.
        self.popen.send_signal(signal.SIGUSR1)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


class ImageLauncher:
    """Starts a ContainerSpec in the image. The spec's argv is the rendered command + args;
    this chart always renders `command`, which (as in Kubernetes) replaces ENTRYPOINT and CMD."""

    def __init__(self, image: str = IMAGE, log_dir: Path | None = None) -> None:
        self.image = image
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="image-logs-"))

    def start(self, spec: ContainerSpec, overrides: dict[str, str]) -> ImageProcess:
        assert spec.read_only_root, "the rendered container does not ask for a read-only root"
        env = {**spec.env, **overrides}
        argv = ["bash", str(IMAGE_SH), "run"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        for mount_path in spec.empty_dirs:
            argv += ["--writable", mount_path]
        if spec.run_as_user is not None:
            argv += ["--user", str(spec.run_as_user)]
        for word in spec.argv:
            argv += ["--command", word]
        log_path = self.log_dir / f"image-{spec.name}-{int(time.time() * 1000)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "IMAGE": self.image},
                start_new_session=True,  # kill() can reach everything as a last resort
            )
        return ImageProcess(popen=popen, log_path=log_path, overrides=dict(overrides))
