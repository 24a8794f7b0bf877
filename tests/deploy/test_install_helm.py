"""scripts/install-helm.sh prints a directory holding a working helm, and is idempotent."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .chart import INSTALL_SCRIPT


def test_install_helm_prints_a_dir_with_helm() -> None:
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=300, check=True
        )
        outputs.append(result.stdout.strip())
    assert outputs[0] == outputs[1]
    helm = Path(outputs[0]) / "helm"
    version = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith(("v3.", "v4."))
