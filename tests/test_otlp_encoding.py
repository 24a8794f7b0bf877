"""The service's OTLP encoder writes exactly the bytes of the official one, and its exporter
sends them exactly as the official exporter sends its own."""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from app.observability import otlp_encoding
from app.observability.otlp_encoding import encode_spans
from app.observability.otlp_export import EncodeAtEnd, EncodingSpanExporter
from app.observability.tracing import _export_processors, _otlp_exporter

REMOTE = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C,
    0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value"), ("other", "x")]),
)
LOCAL = SpanContext(0xFF << 120, 1, is_remote=False)


def _recorded_spans() -> list[ReadableSpan]:
    """Spans as the SDK records them: every kind, attribute type, events, links, statuses, a
    remote and a local parent, two scopes (one with a version, schema and attributes), and
    limits low enough that attributes, events and links are dropped and counted."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc", "n": 3, "f": 1.5, "on": True}),
        span_limits=SpanLimits(max_attributes=14, max_events=3, max_links=2),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scoped = provider.get_tracer("scoped", "1.2.3", "https://schema", {"scope.key": "v"})
    plain = provider.get_tracer("plain")
    parent = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    attributes: dict[str, Any] = {
        "oldest": "dropped first",
        "older": "dropped next",
        "text": "value",
        "unicode": "grüße €",
        "empty": "",
        "negative": -5,
        "zero": 0,
        "large": 2**62,
        "float": 0.25,
        "float.zero": 0.0,
        "true": True,
        "false": False,
        "texts": ("a", ""),
        "ints": [1, -2, 3],
    }
    # The oldest link and event are dropped when the limit is passed.
    links = [Link(LOCAL, {"dropped": True}), Link(REMOTE, {"link.key": 1}), Link(LOCAL)]
    with scoped.start_as_current_span(
        "GET /users/{id}", context=parent, kind=SpanKind.SERVER, attributes=attributes, links=links
    ) as server:
        server.set_attribute("floats", [1.5, -2.5])
        server.set_attribute("bools", [True, False])
        server.add_event("first", {"a": 1, "b": "two"})
        server.add_event("timed", timestamp=1_700_000_000_123_456_789)
        server.add_event("")
        server.add_event("dropped")
        server.set_status(Status(StatusCode.ERROR, "went wrong"))
        with plain.start_as_current_span("redis GET", kind=SpanKind.CLIENT) as client:
            client.set_status(StatusCode.OK)
        with scoped.start_as_current_span("publish", kind=SpanKind.PRODUCER):
            pass
        with (
            pytest.raises(ValueError),
            plain.start_as_current_span("consume", kind=SpanKind.CONSUMER),
        ):
            raise ValueError("recorded as an exception event")
    with plain.start_as_current_span(""):
        pass
    with scoped.start_as_current_span(
        "local child", context=trace.set_span_in_context(NonRecordingSpan(LOCAL))
    ):
        pass
    return list(exporter.get_finished_spans())


def _built_spans() -> list[ReadableSpan]:
    """Spans built directly, with what the SDK's attribute cleaning would refuse but an
    exporter must still handle: None, bytes, mappings, nested sequences, empty keys, values
    out of int64's range or of no OTLP type (left out, the other keys kept), no scope, a
    second resource and a default span."""
    first = Resource({"r": "one"}, "https://resource-schema")
    second = Resource({"r": "two", "nested": {"k": [1, {"deep": None}]}})  # type: ignore[dict-item]
    values: dict[str, Any] = {
        "none": None,
        "bytes": b"\x00\x01",
        "empty.bytes": b"",
        "map": {"a": 1, 2: "b", "list": [1.5, "x", None]},
        "nested": [[1, 2], ("a",), {}],
        "": "empty key",
        "min": -(2**63),
        "max": 2**63 - 1,
        "too.big": 2**63,
        "object": object(),
        "after": "kept",
    }
    context = SpanContext(12345, 678, is_remote=False, trace_flags=TraceFlags(1))
    # Limits of zero: nothing kept, everything counted as dropped.
    no_events: BoundedList[Event] = BoundedList(0)
    no_events.append(Event("lost"))
    no_links: BoundedList[Link] = BoundedList(0)
    no_links.extend([Link(LOCAL), Link(REMOTE)])
    return [
        ReadableSpan(
            name="no room", context=context, resource=first, events=no_events, links=no_links
        ),
        ReadableSpan(
            name="built",
            context=context,
            parent=REMOTE,
            resource=second,
            attributes=values,
            events=[Event("event", {"none": None, "bytes": b"x"}, timestamp=0)],
            kind=SpanKind.INTERNAL,
            status=Status(StatusCode.UNSET),
            start_time=1,
            end_time=2**64 - 1,
            instrumentation_scope=None,
        ),
        ReadableSpan(name="default", context=context, resource=first),
        ReadableSpan(
            name="scoped",
            context=context,
            parent=LOCAL,
            resource=second,
            instrumentation_scope=InstrumentationScope("lib", None, None, {"k": 1}),
        ),
        ReadableSpan(name="again", context=context, resource=first, status=None),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("make_spans", [_recorded_spans, _built_spans])
def test_the_request_is_the_official_encoders_byte_for_byte(
    make_spans: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spans = make_spans()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        expected = official(spans).SerializePartialToString()
    official_errors = [record.getMessage() for record in caplog.records]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        ours = encode_spans(spans)
    # Field for field first (a readable failure), then byte for byte.
    decoded = ExportTraceServiceRequest.FromString(ours)
    assert decoded == ExportTraceServiceRequest.FromString(expected)
    assert ours == expected
    # The same keys are refused, with the same message.
    assert [record.getMessage() for record in caplog.records] == official_errors


def test_what_the_recorded_spans_hold_is_all_in_the_request() -> None:
    """The comparison above would pass for two encoders dropping the same thing: check the
    decoded request holds every span with what was put in it."""
    spans = _recorded_spans()
    decoded = ExportTraceServiceRequest.FromString(encode_spans(spans))
    (resource_spans,) = decoded.resource_spans
    resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
    assert resource["service.name"].string_value == "svc" and resource["n"].int_value == 3
    by_scope = {scope_spans.scope.name: scope_spans for scope_spans in resource_spans.scope_spans}
    assert set(by_scope) == {"scoped", "plain"}
    assert by_scope["scoped"].scope.version == "1.2.3"
    assert by_scope["scoped"].schema_url == "https://schema"
    decoded_spans = {span.name: span for group in by_scope.values() for span in group.spans}
    assert set(decoded_spans) == {span.name for span in spans}
    server = decoded_spans["GET /users/{id}"]
    assert server.trace_id == REMOTE.trace_id.to_bytes(16, "big")
    assert server.parent_span_id == REMOTE.span_id.to_bytes(8, "big")
    assert server.flags == 0x300  # parent is remote
    assert server.kind == server.SPAN_KIND_SERVER
    values = {kv.key: kv.value for kv in server.attributes}
    assert "oldest" not in values and "older" not in values and len(values) == 14
    assert values["text"].string_value == "value" and values["empty"].HasField("string_value")
    assert values["unicode"].string_value == "grüße €"
    assert values["negative"].int_value == -5 and values["false"].HasField("bool_value")
    assert [v.double_value for v in values["floats"].array_value.values] == [1.5, -2.5]
    assert server.dropped_attributes_count == 2 and server.dropped_events_count == 1
    assert server.dropped_links_count == 1 and len(server.links) == 2
    assert server.links[0].attributes[0].key == "link.key" and server.links[0].flags == 0x300
    assert not server.links[1].attributes and server.links[1].flags == 0x100
    assert [event.name for event in server.events] == ["timed", "", "dropped"]
    assert server.events[0].time_unix_nano == 1_700_000_000_123_456_789
    assert server.status.code == server.status.STATUS_CODE_ERROR
    assert server.status.message == "went wrong"
    child = decoded_spans["redis GET"]
    assert child.parent_span_id == server.span_id and child.flags == 0x100
    assert child.status.code == child.status.STATUS_CODE_OK
    assert decoded_spans["consume"].events[0].name == "exception"


class _Capture:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.lock = threading.Lock()


@contextmanager
def _collector() -> Iterator[tuple[str, _Capture]]:
    """A collector that records each request's path, headers and body as received."""
    capture = _Capture()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with capture.lock:
                capture.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            self.send_response(capture.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", capture
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_exporter_sends_what_the_official_one_sends(compression: Compression) -> None:
    spans = _recorded_spans()
    with _collector() as (endpoint, capture):
        for exporter_class in (OTLPSpanExporter, EncodingSpanExporter):
            exporter = exporter_class(
                endpoint=endpoint, headers={"x-tenant": "t1"}, compression=compression
            )
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            exporter.shutdown()
    (path, headers, body), (our_path, our_headers, our_body) = capture.requests
    assert our_path == path == "/v1/traces"
    assert our_headers == headers
    assert our_headers["x-tenant"] == "t1"
    assert our_headers["content-type"] == "application/x-protobuf"
    if compression is Compression.Gzip:
        assert our_headers["content-encoding"] == "gzip"
        body, our_body = gzip.decompress(body), gzip.decompress(our_body)
    assert our_body == body
    assert len(ExportTraceServiceRequest.FromString(our_body).resource_spans[0].scope_spans) == 2


def test_a_refused_or_oversized_export_fails_as_the_official_one_does() -> None:
    spans = _recorded_spans()
    with _collector() as (endpoint, capture):
        capture.status = 400  # not retryable: one attempt, then failure
        refused = EncodingSpanExporter(endpoint=endpoint, timeout=2)
        assert refused.export(spans) is SpanExportResult.FAILURE
        oversized = EncodingSpanExporter(endpoint=endpoint, max_request_size=100)
        assert oversized.export(spans) is SpanExportResult.FAILURE
        assert len(capture.requests) == 1  # the oversized batch was never sent
        refused.shutdown()
        assert refused.export(spans) is SpanExportResult.FAILURE
        assert len(capture.requests) == 1


def test_the_protocol_variable_picks_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    http = _otlp_exporter()
    assert isinstance(http, EncodingSpanExporter)
    assert http._endpoint == "http://127.0.0.1:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    grpc = _otlp_exporter()
    assert isinstance(grpc, GrpcExporter)  # gRPC keeps the official exporter whole
    grpc.shutdown()
    http.shutdown()


def test_only_the_services_encoder_gets_spans_written_as_they_end() -> None:
    http = EncodingSpanExporter(endpoint="http://127.0.0.1:4318/v1/traces")
    grpc = GrpcExporter(endpoint="127.0.0.1:4317", insecure=True)
    processors = _export_processors(http)
    grpc_processors = _export_processors(grpc)
    # Written before the batch processor queues the span, not while the export reads it.
    assert [type(each) for each in processors] == [EncodeAtEnd, BatchSpanProcessor]
    assert [type(each) for each in grpc_processors] == [BatchSpanProcessor]
    for each in (*processors, *grpc_processors):
        each.shutdown()


def test_kept_attributes_never_stand_in_for_another_type_or_value() -> None:
    """The encoder keeps the encoded form of repeated attributes: 1, True and "1" under one
    name stay three values, and values that never repeat (more than the store holds) still
    come out right, before and after it is emptied."""
    resource = Resource({"service.name": "svc"})
    context = SpanContext(1, 2, is_remote=False)
    spans = [
        ReadableSpan(name="typed", context=context, resource=resource, attributes={"v": value})
        for value in (1, True, "1", 1.0, 0, False, "", 1, True)
    ]
    spans += [
        ReadableSpan(
            name="distinct",
            context=context,
            resource=resource,
            attributes={"url.path": f"/users/{n}", "http.route": "/users/{id}", "n": n % 7},
        )
        for n in range(5000)
    ]
    assert encode_spans(spans) == official(spans).SerializePartialToString()
    assert encode_spans(spans) == official(spans).SerializePartialToString()


def test_long_values_are_encoded_but_never_kept() -> None:
    """Only short values are kept for reuse: a burst of failing requests, each with its own
    long exception stack trace, must not leave megabytes of copies in the encoder."""
    resource = Resource({"service.name": "svc"})
    context = SpanContext(1, 2, is_remote=False)
    spans = [
        ReadableSpan(
            name="failed",
            context=context,
            resource=resource,
            attributes={"short": "kept", "trace": f"Traceback {n}\n" + "  frame\n" * 2000},
            events=[Event("exception", {"exception.stacktrace": f"{n}" * 5000})],
        )
        for n in range(200)
    ]
    assert encode_spans(spans) == official(spans).SerializePartialToString()
    kept = [
        len(encoded)
        for stores in otlp_encoding._FIELDS.values()
        for store in stores.values()
        for encoded in store.values()
    ]
    assert kept and max(kept) <= 300
