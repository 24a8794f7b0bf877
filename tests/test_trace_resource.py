"""The process's trace resource is hashed once: the OTLP encoder hashes it for every span it
exports, and the SDK's own hash JSON-encodes every attribute each time."""

from __future__ import annotations

import json
from unittest import mock

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.observability.tracing import build_resource
from app.settings import Settings


def test_the_resource_is_the_sdk_s_with_a_hash_computed_once() -> None:
    resource = build_resource(Settings(_env_file=None))  # type: ignore[call-arg]
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain and hash(resource) == hash(plain)
    assert resource.attributes["service.name"]

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for n in range(50):
        with tracer.start_as_current_span(f"span {n}"):
            pass
    spans = exporter.get_finished_spans()
    with mock.patch("opentelemetry.sdk.resources.dumps", side_effect=json.dumps) as dumps:
        request = encode_spans(spans)
    assert dumps.call_count == 0  # hashed before: no attribute dump per exported span
    (resource_spans,) = request.resource_spans
    assert len(resource_spans.scope_spans[0].spans) == 50
    names = {attribute.key for attribute in resource_spans.resource.attributes}
    assert "service.name" in names
