"""Under gunicorn with 2 workers: exact request counts, every own metric exported, spans
leaving over OTLP, and log lines carrying the trace id of their span."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from app.observability import metrics as service_metrics
from app.observability.metric_values import FLUSH_INTERVAL_SECONDS
from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.otlp import OtlpReceiver, otlp_receiver
from tests.support.service import RunningService, running_service

PASSWORD = "observable password"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def service(receiver: OtlpReceiver) -> Iterator[RunningService]:
    env = {
        "DATABASE_URL": fresh_database("user_service_obs_test"),
        "REDIS_URL": redis_url(2),
        "CACHE_KEY_PREFIX": f"obs{uuid.uuid4().hex[:8]}",
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    with running_service(env, workers=2) as service:
        yield service


@pytest.fixture(scope="module")
def session(service: RunningService) -> dict[str, Any]:
    with httpx.Client(base_url=service.base_url) as client:
        email = f"watcher-{uuid.uuid4().hex[:6]}@example.com"
        user = client.post("/api/v1/users", json={"email": email, "password": PASSWORD}).json()
        tokens = client.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        ).json()
    return {"user": user, "tokens": tokens}


def _scrape(service: RunningService) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(service.metrics_url).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _sum(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def test_request_count_is_exact_whichever_worker_answers(
    service: RunningService, session: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {session['tokens']['access_token']}"}
    url = f"/api/v1/users/{session['user']['id']}"
    requests = 60
    # New connections spread the requests over both workers.
    for _ in range(requests):
        assert httpx.get(f"{service.base_url}{url}", headers=headers).status_code == 200
    # Whichever worker answers the scrape, the other's requests reach it within a flush
    # interval (a second); then every scrape counts each request exactly once.
    samples = _scrape_until(service, lambda seen: _counted(seen) >= requests)
    assert _counted(samples) == requests
    for _ in range(4):
        samples = _scrape(service)
        assert _counted(samples) == requests
        assert _sum(samples, "user_service_worker_processes") == 2
    assert _sum(samples, "user_service_cache_requests_total", result="hit") >= requests - 2


def _counted(samples: dict[str, list[tuple[dict[str, str], float]]]) -> float:
    return _sum(samples, "http_requests_total", handler="/api/v1/users/{user_id}", method="GET")


def _scrape_until(
    service: RunningService,
    condition: Any,
    timeout: float = 10 + 2 * FLUSH_INTERVAL_SECONDS,
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Scrapes until one satisfies `condition` or `timeout` passes (on a busy machine a
    worker's flush can come late); the last scrape either way."""
    deadline = time.monotonic() + timeout
    while not condition(samples := _scrape(service)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return samples


def _exported_names() -> set[str]:
    names: set[str] = set()
    for value in vars(service_metrics).values():
        if isinstance(value, Counter):
            names.add(f"{value._name}_total")
        elif isinstance(value, Histogram):
            names.add(f"{value._name}_bucket")
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def test_every_own_metric_is_exported(service: RunningService, session: dict[str, Any]) -> None:
    # The login may have been answered by the worker that does not answer the scrape.
    samples = _scrape_until(
        service, lambda seen: _sum(seen, "user_service_auth_events_total", event="login_success")
    )
    expected = _exported_names()
    assert len(expected) >= 15
    missing = sorted(name for name in expected if name not in samples)
    assert not missing
    assert _sum(samples, "user_service_db_pool_max_connections") == 2 * 3
    assert _sum(samples, "user_service_build_info") == 1
    assert _sum(samples, "user_service_auth_events_total", event="login_success") == 1
    for name in ("http_request_duration_seconds_bucket", "http_requests_inprogress"):
        assert name in samples
    handlers = {labels.get("handler") for labels, _ in samples["http_requests_total"]}
    assert not handlers & {"/livez", "/readyz", "/metrics"}


def _wait_for(predicate: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    return predicate()


def test_spans_leave_over_otlp_and_logs_carry_their_trace_id(
    service: RunningService, receiver: OtlpReceiver, session: dict[str, Any]
) -> None:
    request_id = f"trace-check-{uuid.uuid4().hex[:8]}"
    response = httpx.get(
        f"{service.base_url}/api/v1/users/me",
        headers={
            "Authorization": f"Bearer {session['tokens']['access_token']}",
            "X-Request-ID": request_id,
        },
    )
    assert response.status_code == 200
    trace_id = response.headers["x-trace-id"]
    spans = _wait_for(lambda: [s for s in receiver.snapshot() if s.trace_id == trace_id])
    assert spans, "no span of the request reached the OTLP receiver"
    assert {s.resource.get("service.name") for s in spans} == {"user-service"}
    assert any(s.name == "cache.get user" for s in spans)

    def access_line() -> dict[str, Any] | None:
        for line in service.logs().splitlines():
            if request_id in line and '"app.access"' in line:
                record: dict[str, Any] = orjson.loads(line)
                return record
        return None

    record = _wait_for(access_line)
    assert record is not None
    assert record["trace_id"] == trace_id
    assert record["span_id"] in {s.span_id for s in spans}
    assert record["route"] == "/api/v1/users/me"
    assert {
        "timestamp",
        "level",
        "event",
        "logger",
        "method",
        "status",
        "duration_ms",
    } <= record.keys()


def test_logs_hold_no_secrets_and_no_probe_lines(
    service: RunningService, session: dict[str, Any]
) -> None:
    for path in ("/livez", "/readyz"):
        httpx.get(f"{service.base_url}{path}")
    httpx.get(service.metrics_url)
    logs = service.logs()
    for secret in (PASSWORD, session["tokens"]["access_token"], session["tokens"]["refresh_token"]):
        assert secret not in logs
    for line in logs.splitlines():
        record = orjson.loads(line)
        assert record.get("route") not in {"/livez", "/readyz", "/metrics"}
