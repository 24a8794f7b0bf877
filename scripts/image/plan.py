"""Resolves what a container runtime would run from an image's OCI config, with Kubernetes' rules.

Usage: plan.py CONFIG_JSON ROOTFS PLAN_DIR
Reads the request from PLAN_DIR: request.command, request.args, request.env (NUL-separated; a
missing file means "not given") and request.user ("uid[:gid]" or empty).
Writes PLAN_DIR/argv and PLAN_DIR/env (NUL-separated) and PLAN_DIR/meta (shell assignments).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def passwd_home(rootfs: Path, uid: str) -> str | None:
    try:
        lines = (rootfs / "etc/passwd").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == uid:
            return fields[5]
    return None


def main() -> None:
    config = json.loads(sys.argv[1]) or {}
    rootfs, plan = Path(sys.argv[2]), Path(sys.argv[3])

    def read_list(name: str) -> list[str] | None:
        path = plan / name
        if not path.exists():
            return None
        return [item.decode() for item in path.read_bytes().split(b"\0")[:-1]]

    # command replaces ENTRYPOINT and then drops CMD unless args are given; args replace CMD.
    command, args = read_list("request.command") or [], read_list("request.args")
    entrypoint = command or (config.get("Entrypoint") or [])
    cmd = args if args is not None else ([] if command else (config.get("Cmd") or []))
    argv = entrypoint + cmd
    if not argv:
        sys.exit("image has no ENTRYPOINT/CMD and none was given")

    # Image ENV first; the pod's env wins.
    env: dict[str, str] = {}
    for item in (config.get("Env") or []) + (read_list("request.env") or []):
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"bad env entry {item!r} (want K=V)")
        env[key] = value

    # runAsUser (here --user) wins over the image's USER, as in a pod's securityContext.
    user = (plan / "request.user").read_text() or config.get("User") or "0"
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        # runAsNonRoot can only be verified for a numeric USER; refuse what a kubelet would refuse.
        sys.exit(f"USER {user!r} is not numeric uid[:gid]")
    # As container runtimes do: HOME from the image's passwd entry unless the env sets it, else /.
    env.setdefault("HOME", passwd_home(rootfs, uid) or "/")

    def write(name: str, items: list[str]) -> None:
        (plan / name).write_bytes(b"".join(s.encode() + b"\0" for s in items))

    write("argv", argv)
    write("env", [f"{k}={v}" for k, v in env.items()])
    (plan / "meta").write_text(
        f"RUN_UID={uid}\nRUN_GID={gid or uid}\n"
        f"RUN_WORKDIR={config.get('WorkingDir') or '/'}\n"
        f"RUN_STOPSIGNAL={config.get('StopSignal') or 'SIGTERM'}\n"
    )


if __name__ == "__main__":
    main()
