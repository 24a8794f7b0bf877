"""record_span behaves as the SDK's start_as_current_span: current inside, parent of what runs
in it, ended on the way out, exceptions recorded with an ERROR status and re-raised."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import StatusCode

from app.observability.tracing import ServiceTracerProvider, record_span


def _provider() -> tuple[ServiceTracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = ServiceTracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_the_span_is_current_inside_and_parents_what_runs_in_it() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    request = tracer.start_span("GET /")
    token = otel_context.attach(trace.set_span_in_context(request))
    try:
        with record_span(tracer, "cache.get user") as span:
            assert trace.get_current_span() is span
            span.set_attribute("cache.hit", True)
            tracer.start_span("GET").end()
        assert trace.get_current_span() is request
    finally:
        otel_context.detach(token)
        request.end()
    child, step, _ = exporter.get_finished_spans()
    assert step.name == "cache.get user" and step.end_time is not None
    assert step.parent is not None and step.parent.span_id == request.get_span_context().span_id
    assert child.parent is not None and child.parent.span_id == step.context.span_id
    assert step.attributes == {"cache.hit": True}
    assert step.status.status_code is StatusCode.UNSET


def test_an_exception_is_recorded_and_propagates() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    before = trace.get_current_span()
    with pytest.raises(ValueError, match="boom"), record_span(tracer, "cache.get user"):
        raise ValueError("boom")
    assert trace.get_current_span() is before
    (step,) = exporter.get_finished_spans()
    assert step.status.status_code is StatusCode.ERROR
    assert step.status.description == "ValueError: boom"
    (event,) = step.events
    assert event.name == "exception"
    assert event.attributes is not None and event.attributes["exception.type"] == "ValueError"


def test_a_cancellation_ends_the_span_without_an_error() -> None:
    # Like the SDK: only Exceptions are errors; a BaseException such as a cancellation is not.
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    with pytest.raises(KeyboardInterrupt), record_span(tracer, "cache.get user"):
        raise KeyboardInterrupt
    (step,) = exporter.get_finished_spans()
    assert step.end_time is not None
    assert step.status.status_code is StatusCode.UNSET
    assert not step.events
