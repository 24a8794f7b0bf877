"""/docs and /openapi.json default off in production, on elsewhere; DOCS_ENABLED overrides."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings

PRODUCTION: dict[str, Any] = {
    "APP_ENV": "production",
    "DATABASE_URL": "postgresql+asyncpg://u@db/x",
    "REDIS_URL": "redis://r:6379/0",
    "SIGNING_KEY_ENCRYPTION_KEY": "e" * 44,
    "LOG_FORMAT": "json",
}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (PRODUCTION, False),
        ({**PRODUCTION, "DOCS_ENABLED": "true"}, True),
        ({"APP_ENV": "development"}, True),
        ({"APP_ENV": "test", "DOCS_ENABLED": "false"}, False),
    ],
)
def test_docs_default_follows_the_environment(values: dict[str, Any], expected: bool) -> None:
    assert Settings(**values).docs_enabled is expected


async def test_production_app_serves_no_docs() -> None:
    # No lifespan: routing alone decides whether the documents exist.
    app = create_app(Settings(**PRODUCTION))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path in ("/docs", "/openapi.json"):
            assert (await client.get(path)).status_code == 404, path
