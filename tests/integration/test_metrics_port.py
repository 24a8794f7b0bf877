"""/metrics lives on its own port: the public port (and so any Ingress) never serves it, and
the metrics port serves nothing else, whatever Host a scraper sends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import RunningService, running_service


@pytest.fixture(scope="module")
def service() -> Iterator[RunningService]:
    env = {
        "DATABASE_URL": fresh_database("user_service_metrics_port_test"),
        "REDIS_URL": redis_url(3),
        "CACHE_KEY_PREFIX": f"mp{uuid.uuid4().hex[:8]}",
        "TRUSTED_HOSTS": "users.example.com",
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "1",
    }
    with running_service(env, workers=2) as service:
        yield service


def test_public_port_does_not_serve_metrics(service: RunningService) -> None:
    response = httpx.get(f"{service.base_url}/metrics", headers={"Host": "users.example.com"})
    assert response.status_code == 404, response.text[:200]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "user_service_build_info" not in response.text


def test_metrics_port_serves_every_workers_metrics(service: RunningService) -> None:
    # Prometheus addresses the pod by IP: no Host check applies on this port.
    response = httpx.get(service.metrics_url, headers={"Host": "10.244.1.17:9464"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "user_service_build_info" in response.text
    assert "user_service_worker_processes" in response.text


@pytest.mark.parametrize("path", ["/livez", "/api/v1/users/me", "/docs", "/metrics/extra"])
def test_metrics_port_serves_nothing_else(service: RunningService, path: str) -> None:
    response = httpx.get(f"http://127.0.0.1:{service.metrics_port}{path}")
    assert response.status_code == 404, (path, response.text[:200])
