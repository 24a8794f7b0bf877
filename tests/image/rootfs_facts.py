"""Facts about an image's root filesystem, read from the host.

Usage: scripts/image.sh with-rootfs python3 tests/image/rootfs_facts.py UID GID

Prints one JSON object: compilers and build tools found, leftover package or build caches,
paths the given UID/GID could write if the root were writable, the service files in /app, and
the apparent size in bytes. The tests decide what is acceptable.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

ROOT = Path(os.environ["ROOTFS"])
BIN_DIRS = ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin", "opt/venv/bin"]
TOOLS = {"gcc", "cc", "c++", "g++", "cpp", "clang", "make", "ld", "as", "pip", "pip3", "apt-get"}


def compilers() -> list[str]:
    found = []
    for directory in BIN_DIRS:
        for entry in sorted((ROOT / directory).glob("*")):
            name = entry.name
            # apt-get is part of every Debian base; only the build tools and installers matter here.
            if name == "apt-get":
                continue
            if (
                name in TOOLS
                or name.startswith(("gcc-", "g++-", "pip3."))
                or "-linux-gnu-gcc" in name
            ):
                found.append(f"/{directory}/{name}")
    return found


def caches() -> list[str]:
    found = []
    candidates = [
        "root/.cache",
        "home",
        "wheels",
        "src",
        "tmp",
        "var/cache/apt/archives",
        "var/lib/apt/lists",
    ]
    for rel in candidates:
        path = ROOT / rel
        if not path.is_dir():
            continue
        for child in path.iterdir():
            if child.name in {"lock", "partial", "auxfiles"}:
                continue
            found.append(f"/{rel}/{child.name}")
    # apt's package caches, which `apt-get update` and `install` leave unless cleaned.
    found += [f"/{p.relative_to(ROOT)}" for p in ROOT.glob("var/cache/apt/*.bin")]
    for pattern in (
        "opt/venv/lib/python3*/site-packages/pip",
        "opt/venv/lib/python3*/site-packages/setuptools",
    ):
        found += [f"/{p.relative_to(ROOT)}" for p in ROOT.glob(pattern)]
    for base in ("opt", "app", "root", "usr/local"):
        for dirpath, _dirs, files in os.walk(ROOT / base):
            found += [
                f"/{Path(dirpath, f).relative_to(ROOT)}"
                for f in files
                if f.endswith((".whl", ".tar.gz"))
            ]
    return found


def writable(uid: int, gid: int) -> list[str]:
    """Paths (not symlinks) whose mode lets uid/gid write them; skips the runtime's mounts."""
    found = []
    for dirpath, dirs, files in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT)
        if rel.parts[:1] in (("proc",), ("sys",), ("dev",)):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = st.st_mode
            if (
                (st.st_uid == uid and mode & stat.S_IWUSR)
                or (st.st_gid == gid and mode & stat.S_IWGRP)
                or mode & stat.S_IWOTH
            ):
                found.append(f"/{path.relative_to(ROOT)}")
    return found


def size() -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(ROOT):
        for name in files:
            st = Path(dirpath, name).lstat()
            total += st.st_size
    return total


def main() -> None:
    uid, gid = int(sys.argv[1]), int(sys.argv[2])
    app = ROOT / "app"
    print(
        json.dumps(
            {
                "compilers": compilers(),
                "caches": caches(),
                "writable": writable(uid, gid),
                "app_files": sorted(str(p.relative_to(app)) for p in app.glob("*"))
                if app.is_dir()
                else [],
                "size_bytes": size(),
            }
        )
    )


if __name__ == "__main__":
    main()
