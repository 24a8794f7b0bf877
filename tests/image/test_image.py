"""Checks on the built image: the contract config, a non-root numeric user, no build tools or
caches in the final stage, nothing writable but the emptyDir paths, and its size."""

from __future__ import annotations

import json
import re
from typing import Any

from .conftest import BASE_IMAGE_LOCAL, REPORT, BuiltImage, image_sh

# Paths the base itself leaves world-writable (sticky) or that the image makes the app's:
# harmless under readOnlyRootFilesystem, where only the mounted emptyDirs are writable.
EXPECTED_WRITABLE = {"/tmp", "/var/tmp", "/run/lock", "/run/prometheus"}
# What the runtime stage may add on top of its base (the venv with its pinned dependencies).
SIZE_BUDGET_BYTES = 250 * 1024 * 1024


def rootfs_facts(image: str, uid: int, gid: int) -> dict[str, Any]:
    result = image_sh(
        "with-rootfs", "python3", "tests/image/rootfs_facts.py", str(uid), str(gid), image=image
    )
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


def test_config_matches_the_contract(image: BuiltImage) -> None:
    config = image.config
    assert config["Entrypoint"] == ["user-service"]
    assert config["Cmd"] == ["serve"]
    assert config["WorkingDir"] == "/app"
    assert config["StopSignal"] == "SIGTERM"
    assert "8000/tcp" in config["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/run/prometheus"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    # By soname, not by path: the loader finds it on every architecture the base is built for.
    assert env["LD_PRELOAD"] == "libjemalloc.so.2"
    labels = config["Labels"]
    for key in ("title", "version", "revision", "created", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"label {key} missing"
    assert env["SERVICE_VERSION"] == labels["org.opencontainers.image.version"]


def test_runs_as_a_non_root_numeric_user(image: BuiltImage) -> None:
    # runAsNonRoot can only be verified by the kubelet when USER is numeric.
    assert re.fullmatch(r"\d+:\d+", image.config["User"]), image.config["User"]
    uid, gid = image.uid_gid
    assert uid == 10001 and gid == 10001
    shown = image_sh("run", "--command", "id", "--", "-u").stdout.split()
    assert shown == ["10001"], shown


def test_no_build_tools_or_caches_in_the_final_stage(image: BuiltImage) -> None:
    facts = rootfs_facts(image.name, *image.uid_gid)
    assert facts["compilers"] == [], f"build tools or installers in the image: {facts['compilers']}"
    assert facts["caches"] == [], f"package or build caches left in the image: {facts['caches']}"
    assert {"gunicorn.conf.py", "alembic.ini", "migrations"} <= set(facts["app_files"])


def test_the_app_user_can_write_nothing_of_its_own_code(image: BuiltImage) -> None:
    facts = rootfs_facts(image.name, *image.uid_gid)
    unexpected = set(facts["writable"]) - EXPECTED_WRITABLE
    assert not unexpected, f"writable by the app user: {sorted(unexpected)}"


def test_root_is_read_only_and_only_the_empty_dirs_are_writable(image: BuiltImage) -> None:
    """As the app user on the read-only root, as the chart runs it."""
    script = """
import errno, json, os
result = {}
for d in ["/", "/app", "/app/migrations", "/opt/venv", "/opt/venv/bin", "/var/tmp", "/run", "/etc",
          "/tmp", "/run/prometheus"]:
    try:
        with open(os.path.join(d, ".write-probe"), "w") as f:
            f.write("x")
        result[d] = "written"
    except OSError as e:
        result[d] = errno.errorcode[e.errno]
print(json.dumps(result))
"""
    out = image_sh("run", "--command", "python3", "--", "-c", script).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result.pop("/tmp") == "written"
    assert result.pop("/run/prometheus") == "written"
    assert set(result.values()) == {"EROFS"}, result


def test_every_process_allocates_with_jemalloc(image: BuiltImage) -> None:
    """Argon2's 64 MiB per hash, mapped and unmapped by glibc's malloc in the worker's own
    address space, stalls the event loop beside it; jemalloc keeps the range. A preload the
    loader cannot find is only a warning on stderr, so the mapping itself is what is checked."""
    probe = (
        "import json; maps = open('/proc/self/maps').read(); "
        "print(json.dumps(sorted({line.split()[-1] for line in maps.splitlines() "
        "if 'jemalloc' in line})))"
    )
    result = image_sh("run", "--command", "python3", "--", "-c", probe)
    mapped = json.loads(result.stdout.strip().splitlines()[-1])
    assert [path.rsplit("/", 1)[-1] for path in mapped] == ["libjemalloc.so.2"], mapped
    assert "LD_PRELOAD" not in result.stderr, result.stderr


def test_size_against_the_base(image: BuiltImage) -> None:
    image_bytes = int(rootfs_facts(image.name, *image.uid_gid)["size_bytes"])
    base_bytes = int(rootfs_facts(BASE_IMAGE_LOCAL, 0, 0)["size_bytes"])
    added = image_bytes - base_bytes
    REPORT.append(
        f"image {image.name}: {image_bytes / 1e6:.0f} MB unpacked; base {BASE_IMAGE_LOCAL}: "
        f"{base_bytes / 1e6:.0f} MB; added by the runtime stage: {added / 1e6:.0f} MB"
    )
    layers = image_sh("inspect").stdout.strip().splitlines()[-1]
    REPORT.append(f"layers: {layers.strip()}")
    assert 0 < added < SIZE_BUDGET_BYTES, f"the runtime stage adds {added / 1e6:.0f} MB"


def test_only_runtime_packages_and_embedded_mode_names_what_is_missing(image: BuiltImage) -> None:
    """Development-only packages (test tools, SQLite, the in-process Redis) stay out of the
    image; a start there without the URLs says which variable to set, not an ImportError."""
    probe = (
        "import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not "
        "None for m in ['app', 'fakeredis', 'aiosqlite', 'pytest', 'mypy', 'ruff', 'locust']}))"
    )
    out = image_sh("run", "--command", "python3", "--", "-c", probe).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found.pop("app") is True
    assert not any(found.values()), found
    start = (
        "from app.settings import Settings; from app.infra.redis import create_redis; "
        "create_redis(Settings())"
    )
    result = image_sh("run", "--command", "python3", "--", "-c", start, check=False)
    assert result.returncode != 0
    assert "REDIS_URL is not set" in result.stdout + result.stderr
