"""Fixtures for the image checks: the project image, built with buildah from ./Dockerfile.

The image is built once per session by scripts/image.sh (idempotent; a no-op rebuild takes
seconds). Without buildah, or without root (mount namespaces, chroot), every test here is
skipped with the reason; `bash scripts/image.sh ensure-tools` installs what is missing.
Set IMAGE_TEST_BUILD=0 to test an image that is already built instead of rebuilding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_SH = REPO_ROOT / "scripts" / "image.sh"
IMAGE = os.environ.get("IMAGE", "localhost/user-service:dev")
BASE_IMAGE_LOCAL = os.environ.get("BASE_IMAGE_LOCAL", "localhost/user-service-base:bookworm")

# Lines for the end-of-run summary: the image size against its base, the build time.
REPORT: list[str] = []


def unavailable() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "image checks need root (mount namespaces, chroot); CI runs as root"
    if shutil.which("buildah") is None:
        return "buildah is not installed: `bash scripts/image.sh ensure-tools` installs it"
    return None


def image_sh(
    *args: str, timeout: float = 120, check: bool = True, image: str = IMAGE
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGE": image}
    result = subprocess.run(
        ["bash", str(IMAGE_SH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"scripts/image.sh {' '.join(args)} exited {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@dataclass(frozen=True)
class BuiltImage:
    name: str
    config: dict[str, Any]
    build_seconds: float | None

    @property
    def uid_gid(self) -> tuple[int, int]:
        uid, _, gid = self.config["User"].partition(":")
        return int(uid), int(gid or uid)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, with the reason, every test that needs the built image; the static ones still run."""
    reason = unavailable()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents and "image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    build_seconds: float | None = None
    if os.environ.get("IMAGE_TEST_BUILD", "1") != "0":
        log = tmp_path_factory.mktemp("image-build") / "build.log"
        started = time.monotonic()
        # A cold build (base + all wheels) takes a few minutes; a warm one seconds.
        result = image_sh("build", timeout=1800, check=False)
        build_seconds = time.monotonic() - started
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            pytest.fail(
                f"scripts/image.sh build exited {result.returncode} (log {log}):\n"
                f"{(result.stdout + result.stderr)[-4000:]}"
            )
        REPORT.append(f"image build (scripts/image.sh build): {build_seconds:.0f} s")
    config = json.loads(image_sh("config").stdout)
    return BuiltImage(name=IMAGE, config=config, build_seconds=build_seconds)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("container image")
        for line in REPORT:
            terminalreporter.write_line(line)
