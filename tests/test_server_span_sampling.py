"""The request's server span is sampled by the configured sampler's rule, whichever way it is
built: an unsampled one is the SDK's non-recording span to the field (trace id, flags, trace
state), exports nothing, and still carries the trace to the headers, the logs and whatever
the request calls; a sampled one records on the judged trace id."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from app.observability.logging import add_trace_context
from app.observability.tracing import ServiceTracerProvider, request_context, start_server_span
from tests.support.asgi_scope import http_scope

_LIMIT = (1 << 64) - 1
TEMPLATE = "/api/v1/users/{user_id}"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _provider(sampler: Sampler) -> tuple[ServiceTracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = ServiceTracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    # The SDK draws its ids from `random`: a fixed seed makes the sampled share repeatable.
    state = random.getstate()
    random.seed(1234)
    yield
    random.setstate(state)


def _exported(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


def test_root_spans_are_sampled_by_the_ratio_rule_on_their_own_trace_id() -> None:
    rate = 0.1
    provider, exporter = _provider(ParentBasedTraceIdRatio(rate))
    bound = TraceIdRatioBased(rate).bound
    sampled = 0
    for _ in range(3000):
        span = start_server_span(http_scope(), TEMPLATE, provider)
        context = span.get_span_context()
        assert context.is_valid and not context.is_remote
        # Sampled exactly when the rule says so for the trace id the span carries: a decision
        # made on one trace id and a span started on another would break this both ways.
        assert span.is_recording() == (context.trace_id & _LIMIT < bound)
        assert context.trace_flags.sampled == span.is_recording()
        assert context.trace_flags.random_trace_id
        sampled += span.is_recording()
        span.end()
    assert 200 <= sampled <= 400
    exported = _exported(exporter)
    assert len(exported) == sampled
    assert all(s.kind is SpanKind.SERVER and s.name == f"GET {TEMPLATE}" for s in exported)
    assert all(s.parent is None for s in exported)


def test_an_unsampled_root_span_is_the_sdks_non_recording_span() -> None:
    provider, exporter = _provider(ParentBased(ALWAYS_OFF))
    span = start_server_span(http_scope(), TEMPLATE, provider)
    reference = provider.get_tracer("reference").start_span("GET")
    assert isinstance(span, NonRecordingSpan) and not span.is_recording()
    ours, sdk = span.get_span_context(), reference.get_span_context()
    assert ours.is_valid and ours.trace_id != sdk.trace_id
    assert (ours.trace_flags, ours.trace_state, ours.is_remote) == (
        sdk.trace_flags,
        sdk.trace_state,
        sdk.is_remote,
    )
    span.end()
    assert _exported(exporter) == []


def _traceparent(flags: str) -> tuple[bytes, bytes]:
    return (b"traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}".encode())


@pytest.mark.parametrize("flags", ["00", "02"])  # "02": the caller's trace id is random
def test_an_unsampled_caller_is_followed_and_its_trace_state_kept(flags: str) -> None:
    provider, exporter = _provider(ParentBasedTraceIdRatio(1.0))
    headers = (_traceparent(flags), (b"tracestate", b"vendor=abc"))
    span = start_server_span(http_scope(*headers), TEMPLATE, provider)
    caller = trace.get_current_span(
        propagate.extract({"traceparent": headers[0][1].decode(), "tracestate": "vendor=abc"})
    )
    reference = provider.get_tracer("reference").start_span(
        "GET", context=trace.set_span_in_context(caller)
    )
    assert not span.is_recording() and not reference.is_recording()
    ours, sdk = span.get_span_context(), reference.get_span_context()
    assert f"{ours.trace_id:032x}" == CALLER_TRACE
    assert ours.span_id not in (int(CALLER_SPAN, 16), 0)
    assert (ours.trace_id, ours.trace_flags, ours.trace_state, ours.is_remote) == (
        sdk.trace_id,
        sdk.trace_flags,
        sdk.trace_state,
        sdk.is_remote,
    )
    assert ours.trace_state.get("vendor") == "abc"
    assert ours.trace_flags.random_trace_id == (flags == "02")
    span.end()
    assert _exported(exporter) == []


def test_a_sampled_caller_is_followed_at_any_ratio() -> None:
    provider, exporter = _provider(ParentBasedTraceIdRatio(0.0))
    span = start_server_span(http_scope(_traceparent("01")), TEMPLATE, provider)
    assert span.is_recording()
    span.end()
    (exported,) = _exported(exporter)
    assert f"{exported.context.trace_id:032x}" == CALLER_TRACE
    assert exported.parent is not None and f"{exported.parent.span_id:016x}" == CALLER_SPAN
    assert exported.parent.is_remote


def test_a_sampler_that_samples_unsampled_callers_is_obeyed() -> None:
    lenient = ParentBased(ALWAYS_OFF, remote_parent_not_sampled=ALWAYS_ON)
    provider, exporter = _provider(lenient)
    span = start_server_span(http_scope(_traceparent("00")), TEMPLATE, provider)
    assert span.is_recording()
    span.end()
    assert len(_exported(exporter)) == 1


def test_a_sampler_without_a_parent_rule_is_obeyed() -> None:
    provider, exporter = _provider(TraceIdRatioBased(1.0))
    span = start_server_span(http_scope(_traceparent("00")), TEMPLATE, provider)
    assert span.is_recording()
    span.end()
    (exported,) = _exported(exporter)
    assert f"{exported.context.trace_id:032x}" == CALLER_TRACE


def test_an_unsampled_local_parent_is_followed() -> None:
    provider, exporter = _provider(ParentBasedTraceIdRatio(1.0))
    parent = NonRecordingSpan(
        SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False, trace_flags=TraceFlags(0))
    )
    token = otel_context.attach(trace.set_span_in_context(parent))
    try:
        span = start_server_span(http_scope(), TEMPLATE, provider)
    finally:
        otel_context.detach(token)
    assert not span.is_recording()
    assert span.get_span_context().trace_id == 0xABC
    span.end()
    assert _exported(exporter) == []


def test_an_unsampled_request_passes_its_trace_on_unsampled() -> None:
    provider, _ = _provider(ParentBased(ALWAYS_OFF))
    span = start_server_span(http_scope(_traceparent("00")), TEMPLATE, provider)
    token = otel_context.attach(request_context(span, provider))
    try:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        child = provider.get_tracer("child").start_span("work")
    finally:
        otel_context.detach(token)
    context = span.get_span_context()
    assert carrier["traceparent"] == f"00-{CALLER_TRACE}-{context.span_id:016x}-00"
    assert not child.is_recording()
    assert child.get_span_context().trace_id == context.trace_id


def test_a_sampled_request_passes_its_trace_on_sampled() -> None:
    provider, exporter = _provider(ParentBased(ALWAYS_ON))
    span = start_server_span(http_scope(), TEMPLATE, provider)
    token = otel_context.attach(request_context(span, provider))
    try:
        child = provider.get_tracer("child").start_span("work")
        assert child.is_recording()
        assert child.get_span_context().trace_id == span.get_span_context().trace_id
        child.end()
    finally:
        otel_context.detach(token)
    span.end()
    assert [s.name for s in _exported(exporter)] == ["work", f"GET {TEMPLATE}"]


def test_the_sdk_still_draws_its_own_trace_ids_for_other_root_spans() -> None:
    provider, _ = _provider(ParentBased(ALWAYS_ON))
    for _ in range(3):
        start_server_span(http_scope(), TEMPLATE, provider).end()
    tracer = provider.get_tracer("other")
    ids = {tracer.start_span("job").get_span_context().trace_id for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize("sampler", [ALWAYS_ON, ParentBased(ALWAYS_ON)])
def test_every_request_is_sampled_when_the_sampler_says_always(sampler: Sampler) -> None:
    provider, exporter = _provider(sampler)
    for _ in range(20):
        start_server_span(http_scope(), TEMPLATE, provider).end()
    assert len(_exported(exporter)) == 20


def test_log_lines_of_an_unsampled_request_carry_its_trace() -> None:
    provider, _ = _provider(ParentBasedTraceIdRatio(0.0))
    span = start_server_span(http_scope(), TEMPLATE, provider)
    token = otel_context.attach(request_context(span, provider))
    try:
        fields = add_trace_context(None, "info", {"event": "request"})
    finally:
        otel_context.detach(token)
    context = span.get_span_context()
    assert fields["trace_id"] == f"{context.trace_id:032x}" != "0" * 32
    assert fields["span_id"] == f"{context.span_id:016x}"


def test_the_sdks_own_span_metrics_still_count_unsampled_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    provider = ServiceTracerProvider(
        sampler=ParentBasedTraceIdRatio(0.0), meter_provider=MeterProvider([reader])
    )
    for _ in range(3):
        start_server_span(http_scope(), TEMPLATE, provider).end()
    data = reader.get_metrics_data()
    assert data is not None
    started = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "otel.sdk.span.started"
        for point in metric.data.data_points
    ]
    assert sum(getattr(point, "value", 0) for point in started) == 3
