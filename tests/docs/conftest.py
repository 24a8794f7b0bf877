"""One real service (gunicorn) for the API-document tests, and its live document."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="session")
def service() -> Iterator[RunningService]:
    env = {
        "DATABASE_URL": fresh_database("user_service_docs_test"),
        "REDIS_URL": redis_url(9),
        "CACHE_KEY_PREFIX": f"docs{uuid.uuid4().hex[:8]}",
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "1",
    }
    with running_service(env, workers=1) as service:
        yield service


@pytest.fixture(scope="session")
def live_document(service: RunningService) -> dict[str, Any]:
    response = httpx.get(f"{service.base_url}/openapi.json", timeout=10)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document
