"""A command refusing bad input: exit status 2 and a message, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from loadtests.local_service import REPO


def refusal(module: str, *arguments: str, env: Mapping[str, str] | None = None) -> str:
    """Runs `python -m module arguments` in the repository, with `env` over this process's
    environment; checks that it refused (status 2, no traceback) and returns its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr
