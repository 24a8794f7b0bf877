"""Prometheus samples in multiprocess mode are written in batches, not per request: a cached
read writes nothing into the worker's memory-mapped file, and a worker that stops writes
everything it counted before it goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from app.observability.metric_values import FLUSH_INTERVAL_SECONDS
from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import REPO, running_service

PASSWORD = "batched metrics password"


def test_a_cached_read_writes_nothing_to_the_metrics_file(tmp_path: Path) -> None:
    requests = 200
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": fresh_database("user_service_metric_writes"),
        "REDIS_URL": redis_url(5),
        "CACHE_KEY_PREFIX": f"writes{uuid.uuid4().hex[:8]}",
        "ARGON2_MEMORY_KIB": "8192",
        "ARGON2_TIME_COST": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.metric_writes", str(requests)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    # Eleven writes per request before (counter, two summaries, two histograms and the
    # in-progress gauge's inc and dec); now the request only changes numbers in memory.
    assert result["request_writes"] == 0, result
    # The flushing thread writes each changed sample at most once per interval.
    flushes = result["seconds"] / FLUSH_INTERVAL_SECONDS + 2
    assert result["flush_writes"] <= flushes * result["keys_written"], result
    # The scrape of this worker counts every request, the cache-filling one too.
    assert result["counted"] == requests + 1, result
    assert result["hits"] >= requests, result


def _collected(directory: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def test_workers_that_stop_write_every_request_they_counted() -> None:
    env = {
        "DATABASE_URL": fresh_database("user_service_metric_exit"),
        "REDIS_URL": redis_url(5),
        "CACHE_KEY_PREFIX": f"exit{uuid.uuid4().hex[:8]}",
    }
    requests = 40
    with running_service(env, workers=2) as service:
        with httpx.Client(base_url=service.base_url) as client:
            email = f"exit-{uuid.uuid4().hex[:8]}@example.com"
            user = client.post("/api/v1/users", json={"email": email, "password": PASSWORD})
            token = client.post(
                "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
            ).json()["access_token"]
        url = f"{service.base_url}/api/v1/users/{user.json()['id']}"
        headers = {"Authorization": f"Bearer {token}"}
        # New connections spread the reads over both workers; the service stops right after
        # the last answer, well within a flush interval.
        for _ in range(requests):
            assert httpx.get(url, headers=headers).status_code == 200
        assert service.stop() == 0, service.logs()[-3000:]
        # Read before the block ends: the service's metrics directory goes with it.
        registry = _collected(str(service.metrics_dir))
        labels = {"method": "GET", "status": "2xx", "handler": "/api/v1/users/{user_id}"}
        counted = registry.get_sample_value("http_requests_total", labels)
        logins = registry.get_sample_value(
            "user_service_auth_events_total", {"event": "login_success"}
        )
    assert counted == requests
    assert logins == 1
