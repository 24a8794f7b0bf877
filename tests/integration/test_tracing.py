"""Span trees of real requests, captured in memory, on the real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.settings import Settings
from tests.conftest import reset
from tests.support.app_harness import PASSWORD, AppHarness, start_harness

_EXPORTER = InMemorySpanExporter()
_PROCESSOR = SimpleSpanProcessor(_EXPORTER)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture(scope="module")
async def traced_app(settings_factory: Callable[..., Settings]) -> AsyncIterator[AppHarness]:
    # One app for the module: OpenTelemetry instrumentors are process-wide singletons that
    # instrument the first engine they are given, as in production (one app per worker).
    harness, stop = await start_harness(settings_factory(), span_processor=_PROCESSOR)
    yield harness
    await stop()


@pytest.fixture
async def traced(traced_app: AppHarness) -> AppHarness:
    await reset(traced_app.app)
    return traced_app


def _trace_of(spans: list[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return [span for span in spans if format(span.context.trace_id, "032x") == trace_id]


def _server_span(spans: list[ReadableSpan]) -> ReadableSpan:
    servers = [span for span in spans if span.kind is SpanKind.SERVER]
    assert len(servers) == 1, [span.name for span in spans]
    return servers[0]


def _descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    parent = span.parent
    while parent is not None:
        if parent.span_id == ancestor.context.span_id:
            return True
        node = by_id.get(parent.span_id)
        parent = node.parent if node else None
    return False


def _named(spans: list[ReadableSpan], command: str) -> list[ReadableSpan]:
    """Client spans (database and Redis calls) that run `command`. A Redis pipeline's span is
    named after all its commands ("MGET EVAL GET"); a SQL span starts with its verb."""
    return [
        span
        for span in spans
        if span.kind is SpanKind.CLIENT and command.upper() in span.name.upper().split()
    ]


async def _request_trace(
    harness: AppHarness, spans: InMemorySpanExporter, method: str, url: str, **kwargs: Any
) -> tuple[Any, list[ReadableSpan]]:
    spans.clear()
    response = await harness.client.request(method, url, **kwargs)
    trace_id = response.headers["x-trace-id"]
    return response, _trace_of(list(spans.get_finished_spans()), trace_id)


async def _login_trace(
    harness: AppHarness, spans: InMemorySpanExporter, email: str
) -> tuple[Any, list[ReadableSpan]]:
    """A successful login's response and its trace's spans."""
    response, trace = await _request_trace(
        harness,
        spans,
        "POST",
        "/api/v1/auth/token",
        data={"username": email, "password": PASSWORD},
    )
    assert response.status_code == 200
    return response, trace


async def test_cold_then_warm_read(traced: AppHarness, spans: InMemorySpanExporter) -> None:
    _, headers = await traced.user_with_token("tracer@example.com")
    target = await traced.sign_up("traced@example.com")
    url = f"/api/v1/users/{target['id']}"

    response, cold = await _request_trace(traced, spans, "GET", url, headers=headers)
    assert response.status_code == 200
    server = _server_span(cold)
    assert server.attributes is not None and server.attributes.get("http.route") == (
        "/api/v1/users/{user_id}"
    )
    for kind in ("GET", "SELECT", "SET"):
        matching = _named(cold, kind)
        assert matching, f"no {kind} span in {[s.name for s in cold]}"
        assert all(_descends_from(span, server, cold) for span in matching)
    (lookup,) = [span for span in cold if span.name == "cache.get user"]
    assert lookup.attributes is not None and lookup.attributes["cache.hit"] is False
    assert not [span for span in cold if span.name in {"receive", "send"} or " http " in span.name]

    response, warm = await _request_trace(traced, spans, "GET", url, headers=headers)
    assert response.status_code == 200
    (lookup,) = [span for span in warm if span.name == "cache.get user"]
    assert lookup.attributes is not None and lookup.attributes["cache.hit"] is True
    # The cached read rides in the admission pipeline: one Redis round trip, no SQL.
    (pipeline,) = _named(warm, "MGET")
    # The session entry, the cache lease and the user in one MGET, the rate-limit count
    # beside it: one pipeline.
    assert pipeline.name.split() == ["MGET", "INCRBY", "PEXPIREAT"], pipeline.name
    # What the Redis instrumentation records for a pipeline: the sanitized statement and the
    # server it went to.
    attributes = dict(pipeline.attributes or {})
    assert attributes["db.statement"] == "MGET ? ? ?\nINCRBY ? ?\nPEXPIREAT ? ?"
    assert attributes["db.redis.pipeline_length"] == 3
    assert attributes["db.system"] == "redis"
    assert attributes["net.peer.name"] == "127.0.0.1"
    assert isinstance(attributes["net.peer.port"], int)
    assert not _named(warm, "SELECT")
    assert len([s for s in warm if s.kind is SpanKind.CLIENT]) == 1


async def test_login_and_update_spans(traced: AppHarness, spans: InMemorySpanExporter) -> None:
    me = await traced.sign_up("spanner@example.com")
    response, login = await _login_trace(traced, spans, "spanner@example.com")
    server = _server_span(login)
    assert [s for s in login if s.name == "password.verify" and _descends_from(s, server, login)]
    assert _named(login, "SELECT")
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    response, update = await _request_trace(
        traced,
        spans,
        "PATCH",
        f"/api/v1/users/{me['id']}",
        json={"full_name": "X"},
        headers=headers,
    )
    assert response.status_code == 200
    assert _named(update, "UPDATE")
    assert _named(update, "DEL"), "cache invalidation must be traced"


async def test_incoming_traceparent_is_continued(
    traced: AppHarness, spans: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await traced.client.get(
        "/api/v1/users/me",
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Request-ID": "abc-123"},
    )
    assert response.headers["x-trace-id"] == trace_id
    assert response.headers["x-request-id"] == "abc-123"
    assert _trace_of(list(spans.get_finished_spans()), trace_id)


async def test_probes_are_not_traced(traced: AppHarness, spans: InMemorySpanExporter) -> None:
    spans.clear()
    for path in ("/livez", "/readyz"):
        await traced.client.get(path)
    # A scrape arrives on the metrics port (the default 9464 here) and is answered there.
    scrape = await traced.client.get("http://testserver:9464/metrics")
    assert scrape.status_code == 200 and b"user_service_build_info" in scrape.content
    assert not [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_the_uncached_read_has_the_client_span_of_an_executed_statement(
    traced: AppHarness, spans: InMemorySpanExporter
) -> None:
    """The read's statement reaches the driver without Connection.execute: its span still
    carries what the SQLAlchemy instrumentation records for every executed statement."""
    _, headers = await traced.user_with_token("span-reader@example.com")
    target = await traced.sign_up("span-read@example.com")
    _, login = await _login_trace(traced, spans, "span-read@example.com")
    executed = _named(login, "SELECT")[0]
    response, cold = await _request_trace(
        traced, spans, "GET", f"/api/v1/users/{target['id']}", headers=headers
    )
    assert response.status_code == 200
    (read,) = [s for s in _named(cold, "SELECT") if "FROM users" in str(s.attributes)]
    assert read.name == executed.name
    assert read.attributes is not None and executed.attributes is not None
    assert set(read.attributes) == set(executed.attributes)
    for key, value in executed.attributes.items():
        if "statement" not in key and "query" not in key:
            assert read.attributes[key] == value, key
    statement = next(v for k, v in read.attributes.items() if "statement" in k or "query" in k)
    assert str(statement).startswith("SELECT users.id, users.email")
    assert _descends_from(read, _server_span(cold), cold)


async def test_an_unsampled_caller_gets_its_trace_back_and_no_spans(
    traced: AppHarness, spans: InMemorySpanExporter
) -> None:
    _, headers = await traced.user_with_token("unsampled-caller@example.com")
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    spans.clear()
    response = await traced.client.get(
        "/api/v1/users/me", headers={**headers, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"}
    )
    assert response.status_code == 200
    assert response.headers["x-trace-id"] == trace_id
    # Its server span and every span below it follow the caller: none recorded, none sent.
    assert _trace_of(list(spans.get_finished_spans()), trace_id) == []
    # The same request from a sampling caller is traced whole.
    response = await traced.client.get(
        "/api/v1/users/me", headers={**headers, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    assert response.headers["x-trace-id"] == trace_id
    trace = _trace_of(list(spans.get_finished_spans()), trace_id)
    server = _server_span(trace)
    assert server.parent is not None and f"{server.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert len(trace) > 1
