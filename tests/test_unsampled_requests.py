"""An unsampled request skips span work only where the sampler guarantees nothing below it
would be recorded, and a sampled one keeps it all."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, get_value
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    TraceIdRatioBased,
)
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags

from app.observability.tracing import ServiceTracerProvider, record_span, request_context

UNSAMPLED = NonRecordingSpan(
    SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=TraceFlags(0))
)


def test_only_parent_based_samplers_let_children_follow() -> None:
    assert ServiceTracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1))).children_follow_parent
    assert ServiceTracerProvider(sampler=ParentBased(ALWAYS_OFF)).children_follow_parent
    # A child of an unsampled parent may still be sampled by these: nothing may be skipped.
    assert not ServiceTracerProvider(sampler=TraceIdRatioBased(0.1)).children_follow_parent
    assert not ServiceTracerProvider(sampler=ALWAYS_ON).children_follow_parent
    lenient = ParentBased(ALWAYS_ON, local_parent_not_sampled=ALWAYS_ON)
    assert not ServiceTracerProvider(sampler=lenient).children_follow_parent


def test_an_unsampled_request_runs_with_client_instrumentation_off() -> None:
    provider = ServiceTracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    context = request_context(UNSAMPLED, provider)
    assert get_value(_SUPPRESS_INSTRUMENTATION_KEY, context) is True
    assert trace.get_current_span(context) is UNSAMPLED


def test_a_sampled_request_keeps_its_instrumentation() -> None:
    provider = ServiceTracerProvider(sampler=ParentBased(ALWAYS_ON))
    span = provider.get_tracer("test").start_span("GET /")
    try:
        assert span.is_recording()
        context = request_context(span, provider)
        assert get_value(_SUPPRESS_INSTRUMENTATION_KEY, context) is None
        assert trace.get_current_span(context) is span
    finally:
        span.end()


def test_unsampled_under_a_sampler_that_may_sample_children_keeps_instrumentation() -> None:
    provider = ServiceTracerProvider(sampler=TraceIdRatioBased(0.1))
    context = request_context(UNSAMPLED, provider)
    assert get_value(_SUPPRESS_INSTRUMENTATION_KEY, context) is None
    assert is_instrumentation_enabled()


def test_a_step_of_an_unsampled_request_is_the_requests_own_span() -> None:
    provider = ServiceTracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    token = attach(request_context(UNSAMPLED, provider))
    try:
        with record_span(provider.get_tracer("test"), "cache.get user") as span:
            assert span is UNSAMPLED
            assert trace.get_current_span() is UNSAMPLED
    finally:
        detach(token)
    assert exporter.get_finished_spans() == ()


def test_a_span_made_current_inside_an_unsampled_request_gets_its_own_steps() -> None:
    """The shortcut holds for the request's span only: a recording span made current below
    it (by code with a tracer of its own) parents real child spans."""
    provider = ServiceTracerProvider(sampler=ParentBased(ALWAYS_ON))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    outer = attach(request_context(UNSAMPLED, provider))
    inner_span = tracer.start_span("job", context=trace.set_span_in_context(INVALID_SPAN))
    inner = attach(trace.set_span_in_context(inner_span))
    try:
        with record_span(tracer, "cache.get user") as span:
            assert span is not UNSAMPLED and span.is_recording()
    finally:
        detach(inner)
        detach(outer)
        inner_span.end()
    (step, job) = exporter.get_finished_spans()
    assert step.name == "cache.get user"
    assert step.parent is not None and step.parent.span_id == job.context.span_id
