"""Writes a docker-archive image holding one static binary, for `ctr images import`.

The test cluster cannot pull from a registry, so its pause and CoreDNS images are made
here: one layer with the binary, a config whose entrypoint runs it, and a manifest naming
the image. The archive is deterministic (fixed mtimes, sorted entries).

Usage: python3 image_archive.py NAME:TAG BINARY PATH-IN-IMAGE OUT.tar
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path


def layer_tar(binary: Path, path_in_image: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = binary.read_bytes()
        info = tarfile.TarInfo(path_in_image.lstrip("/"))
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
        tmp = tarfile.TarInfo("tmp")
        tmp.type = tarfile.DIRTYPE
        tmp.mode = 0o1777
        tar.addfile(tmp)
    return buffer.getvalue()


def main(name: str, binary: str, path_in_image: str, out: str) -> None:
    layer = layer_tar(Path(binary), path_in_image)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [path_in_image], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]
    ).encode()
    with tarfile.open(out, mode="w") as tar:
        for member, data in (
            (config_name, config),
            ("layer.tar", layer),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
