"""Fixtures for the deploy checks: the helm binary and renders shared across tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .chart import REPO_ROOT, Helm, find_helm

SCHEMAS_DIR = REPO_ROOT.parent / "shared" / "schemas"


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(find_helm())


@pytest.fixture(scope="session")
def schemas_dir() -> Path:
    """Other projects' JSON schemas, kept beside the repo; absent on a bare clone."""
    if not SCHEMAS_DIR.is_dir():
        pytest.skip(f"no shared schemas at {SCHEMAS_DIR} (kept beside the repo, not in it)")
    return SCHEMAS_DIR


@pytest.fixture(scope="session")
def render_cache() -> dict[Any, Any]:
    return {}
