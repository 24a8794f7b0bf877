"""A test's service leaves its log behind only when the test's block failed: a clean run
removes it, a failing one keeps it for whoever reads the failure."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import running_service


def _env() -> dict[str, str]:
    return {
        "DATABASE_URL": fresh_database("user_service_log_dir_test"),
        "REDIS_URL": redis_url(3),
        "CACHE_KEY_PREFIX": f"ld{uuid.uuid4().hex[:8]}",
        "DB_POOL_SIZE": "1",
        "DB_MAX_OVERFLOW": "0",
    }


def test_a_clean_block_removes_the_services_log() -> None:
    with running_service(_env(), workers=1) as service:
        log_dir = service.log_path.parent
        assert "started" in service.logs_with('"event":"started"')
    assert not log_dir.exists()


def _fail_inside_a_service(seen: list[Path]) -> None:
    with running_service(_env(), workers=1) as service:
        seen.append(service.log_path.parent)
        raise RuntimeError("the test failed")


def test_a_failing_block_keeps_the_services_log() -> None:
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="the test failed"):
        _fail_inside_a_service(seen)
    (log_dir,) = seen
    try:
        assert (log_dir / "service.log").read_text(encoding="utf-8")
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
