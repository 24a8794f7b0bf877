"""A RecordedSpan exports exactly what the SDK's own span would for the same calls, and
record_span uses one only where the SDK's outcome is known."""

from __future__ import annotations

import ast
import inspect
import logging
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, _TracerConfig
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.trace.propagation import _SPAN_KEY

from app.observability import otlp_encoding
from app.observability.current_span import current_span
from app.observability.otlp_encoding import _plain_recorded_span
from app.observability.otlp_encoding import encode_spans as service_encode_spans
from app.observability.otlp_export import EncodeAtEnd
from app.observability.recorded_spans import (
    _EMPTY_ON_ENDING,
    _EMPTY_ON_START,
    ConstantAttributes,
    RecordedSpan,
    sampled_context,
    set_constant_attributes,
)
from app.observability.tracing import (
    ServiceTracerProvider,
    end_server_span,
    record_span,
    start_server_span,
)
from tests.support.asgi_scope import http_scope

Steps = Callable[[trace.Span], None]


def _provider(
    sampler: Sampler | None = None, limits: SpanLimits | None = None
) -> tuple[ServiceTracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = ServiceTracerProvider(sampler=sampler or ParentBased(ALWAYS_ON), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@contextmanager
def _current(span: trace.Span) -> Iterator[None]:
    """`span` current inside the block, and ended after it."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)
        span.end()


def _raised() -> ValueError:
    try:
        raise ValueError("boom")
    except ValueError as error:
        return error


ERROR = _raised()
ODD = object()  # one object: its str() (with its address) is the same for both spans


def _everything(span: trace.Span) -> None:
    span.set_attribute("db.system", "redis")
    span.set_attribute("db.redis.pipeline_length", 3)
    span.set_attribute("ratio", 0.5)
    span.set_attribute("cache.hit", True)
    span.set_attribute("db.system", "redis again")  # set again: moves to the end
    span.set_attribute("peers", ["a", "b"])  # a sequence, stored as a tuple
    span.set_attribute("odd", ODD)  # type: ignore[arg-type]  # invalid: str() or dropped
    span.set_attribute("", "empty key")  # invalid key: dropped and counted
    span.set_attributes({"many.one": 1, "many.two": (True, False), "many.three": b"raw"})
    span.add_event("retry", {"attempt": 2, "": "dropped"})
    span.add_link(trace.SpanContext(7, 8, False), {"link.kind": "follows"})
    span.update_name("renamed")
    span.set_status(StatusCode.ERROR, "went wrong")
    span.record_exception(ERROR, {"extra": "yes"})


def _plain(span: trace.Span) -> None:
    span.set_attributes({"cache.result": "hit", "cache.hit": True})


def _ok_then_error(span: trace.Span) -> None:
    span.set_status(Status(StatusCode.OK))
    span.set_status(StatusCode.ERROR, "ignored after OK")


def _over_the_limit(span: trace.Span) -> None:
    for n in range(6):
        span.set_attribute(f"attribute.{n}", n)


def _over_the_limit_at_once(span: trace.Span) -> None:
    span.set_attribute("first", 0)
    span.set_attributes({f"attribute.{n}": n for n in range(6)})


def _empty_key_at_once(span: trace.Span) -> None:
    span.set_attributes({"kept": 1, "": "empty key"})


def _non_str_key_at_once(span: trace.Span) -> None:
    span.set_attributes({"kept": "yes", 7: "not a str key"})  # type: ignore[dict-item]


def _non_plain_value_at_once(span: trace.Span) -> None:
    span.set_attributes({"kept": "yes", "odd": ODD})  # type: ignore[dict-item]


def _many_events_and_links(span: trace.Span) -> None:
    for n in range(3):
        span.add_event(f"event.{n}", {"n": n})
        span.add_link(trace.SpanContext(7, 8 + n, False), {"n": n})


# Shared by every span of a test run, as a route's or a pipeline's attributes are.
CONSTANT = ConstantAttributes(
    {"db.system": "redis", "db.redis.pipeline_length": 3, "ratio": 0.5, "cache.hit": True}
)
# Values the span's own checks must clean or refuse: taken through them every time.
NOT_PLAIN = ConstantAttributes({"kept": "yes", "peers": ["a", "b"], "odd": ODD})  # type: ignore[dict-item]


def _constant(span: trace.Span) -> None:
    set_constant_attributes(span, CONSTANT)


def _constant_then_more(span: trace.Span) -> None:
    set_constant_attributes(span, CONSTANT)
    span.set_attribute("url.path", "/api/v1/users/1")
    span.set_attributes({"http.response.status_code": 200, "text": "x"})


def _constant_then_a_key_again(span: trace.Span) -> None:
    set_constant_attributes(span, CONSTANT)
    span.set_attribute("ratio", 0.75)  # set again: moves to the end, with its new value


def _constant_after_another(span: trace.Span) -> None:
    span.set_attribute("first", 1)
    set_constant_attributes(span, CONSTANT)


def _constant_not_plain(span: trace.Span) -> None:
    set_constant_attributes(span, NOT_PLAIN)


def _constant_twice(span: trace.Span) -> None:
    set_constant_attributes(span, CONSTANT)
    set_constant_attributes(span, CONSTANT)  # the same keys again: as set_attributes would


def _record(
    provider: ServiceTracerProvider,
    exporter: InMemorySpanExporter,
    steps: Steps,
    *,
    ours: bool,
    trace_state: TraceState | None = None,
) -> ReadableSpan:
    tracer = provider.get_tracer("user-service.test", "1.2.3")
    parent_context = trace.set_span_in_context(
        trace.NonRecordingSpan(
            trace.SpanContext(
                0x1234, 0x5678, True, trace.TraceFlags(0x03), trace_state or TraceState()
            )
        )
    )
    parent = tracer.start_span("GET /users/{user_id}", parent_context, SpanKind.SERVER)
    with _current(parent):
        if ours:
            with record_span(tracer, "cache.get user", SpanKind.CLIENT) as span:
                assert isinstance(span, RecordedSpan)
                steps(span)
        else:
            span = tracer.start_span("cache.get user", kind=SpanKind.CLIENT)
            assert not isinstance(span, RecordedSpan)
            steps(span)
            span.end()
    child, server = exporter.get_finished_spans()
    exporter.clear()
    assert child.parent is not None and not child.parent.is_remote
    assert child.parent.span_id == server.context.span_id
    return child


def _comparable(span: ReadableSpan) -> Any:
    """The OTLP message of one span, with what differs between any two spans (its id and its
    parent's, the clock) set alike."""
    request = encode_spans([span])
    (message,) = request.resource_spans[0].scope_spans[0].spans
    message.span_id = message.parent_span_id = b"\x00" * 8
    message.start_time_unix_nano = message.end_time_unix_nano = 1
    for event in message.events:
        event.time_unix_nano = 1
    return request


@pytest.mark.parametrize(
    "steps",
    [
        _everything,
        _plain,
        _ok_then_error,
        _over_the_limit,
        _over_the_limit_at_once,
        _empty_key_at_once,
        _non_str_key_at_once,
        _non_plain_value_at_once,
        _many_events_and_links,
        _constant,
        _constant_then_more,
        _constant_then_a_key_again,
        _constant_after_another,
        _constant_not_plain,
        _constant_twice,
    ],
    ids=lambda s: s.__name__,
)
@pytest.mark.parametrize(
    "limits",
    [None, SpanLimits(max_span_attributes=4), SpanLimits(max_events=1, max_links=1)],
    ids=["", "limit4", "one-event-one-link"],
)
@pytest.mark.parametrize(
    "state", [TraceState([("vendor", "value")]), TraceState()], ids=["state", "no-state"]
)
def test_a_child_span_exports_what_the_sdk_span_would(
    steps: Steps, limits: SpanLimits | None, state: TraceState
) -> None:
    provider, exporter = _provider(limits=limits)
    sdk = _record(provider, exporter, steps, ours=False, trace_state=state)
    ours = _record(provider, exporter, steps, ours=True, trace_state=state)
    assert _comparable(ours) == _comparable(sdk)
    assert ours.context.trace_state == state and ours.context.trace_flags == 0x03
    # A plain span (the kind a cached read records) is encoded from its own fields.
    if steps in (_plain, _constant, _constant_then_more) and not state and limits is None:
        assert _plain_recorded_span(ours) is not None
    assert ours.context.span_id != sdk.context.span_id  # each span its own id
    assert ours.start_time is not None and ours.end_time is not None
    assert ours.start_time <= ours.end_time
    # The service's own encoder reads the span the same way.
    sdk_bytes = service_encode_spans([_with_ids_and_times_of(sdk, ours)])
    assert service_encode_spans([ours]) == sdk_bytes


def _with_ids_and_times_of(span: ReadableSpan, other: ReadableSpan) -> ReadableSpan:
    events = BoundedList.from_seq(
        None,
        [
            type(event)(event.name, event.attributes, mine.timestamp)
            for event, mine in zip(span.events, other.events, strict=True)
        ],
    )
    events.dropped = span.dropped_events  # the SDK's count, kept with the copies
    return ReadableSpan(
        name=span.name,
        context=other.context,
        parent=other.parent,
        resource=span.resource,
        attributes=span._attributes,  # the SDK's bounded mapping, with its dropped count
        events=events,
        links=span._links,
        kind=span.kind,
        status=span.status,
        start_time=other.start_time,
        end_time=other.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def test_the_limit_drops_the_oldest_attributes_and_counts_them() -> None:
    provider, exporter = _provider(limits=SpanLimits(max_span_attributes=4))
    ours = _record(provider, exporter, _over_the_limit, ours=True)
    assert dict(ours.attributes or {}) == {f"attribute.{n}": n for n in range(2, 6)}
    assert ours.dropped_attributes == 2


def test_an_ended_child_span_changes_nothing_and_ends_once(caplog: Any) -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    parent = tracer.start_span("GET /")
    token = otel_context.attach(trace.set_span_in_context(parent))
    try:
        with record_span(tracer, "cache.get user") as span:
            assert isinstance(span, RecordedSpan)
    finally:
        otel_context.detach(token)
    with caplog.at_level(logging.WARNING):
        span.set_attribute("late", 1)
        span.set_attributes({"later": 2})
        span.set_status(StatusCode.ERROR)
        span.end()
    assert not span.is_recording()
    parent.end()
    finished, _ = exporter.get_finished_spans()
    assert finished.name == "cache.get user"
    assert dict(finished.attributes or {}) == {}
    assert finished.status.status_code is StatusCode.UNSET
    assert "Calling end() on an ended span." in caplog.text
    assert "Setting attribute on ended span." in caplog.text


def test_an_exception_escaping_a_child_span_is_recorded_as_by_the_sdk() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    parent = tracer.start_span("GET /")
    with _current(parent):
        with pytest.raises(ValueError, match="boom"), record_span(tracer, "cache.get user"):
            raise ValueError("boom")
        with pytest.raises(ValueError, match="boom"), tracer.start_as_current_span("sdk"):
            raise ValueError("boom")
    ours, sdk, _ = exporter.get_finished_spans()
    assert isinstance(ours, ReadableSpan)
    assert ours.status.status_code is sdk.status.status_code is StatusCode.ERROR
    assert ours.status.description == sdk.status.description == "ValueError: boom"
    assert [event.name for event in ours.events] == ["exception"]
    ours_event, sdk_event = (
        dict(ours.events[0].attributes or {}),
        dict(sdk.events[0].attributes or {}),
    )
    assert ours_event.keys() == sdk_event.keys()
    assert ours_event["exception.type"] == "ValueError"
    assert ours_event["exception.escaped"] == sdk_event["exception.escaped"] == "False"


@pytest.mark.parametrize(
    ("sampler", "limits"),
    [
        # A sampled parent's children are not all sampled: the sampler decides each.
        (ParentBased(ALWAYS_ON, local_parent_sampled=ALWAYS_OFF), None),
        # Attribute values are cut to a length: the SDK cuts them.
        (ParentBased(ALWAYS_ON), SpanLimits(max_span_attribute_length=8)),
        (ParentBased(ALWAYS_ON), SpanLimits(max_attribute_length=8)),
        # Not a ParentBased sampler at all.
        (ALWAYS_ON, None),
    ],
    ids=["children-sampled-off", "span-value-length", "value-length", "not-parent-based"],
)
def test_the_sdk_starts_the_child_where_its_outcome_is_not_known(
    sampler: Sampler, limits: SpanLimits | None
) -> None:
    provider, exporter = _provider(sampler, limits)
    tracer = provider.get_tracer("test")
    parent = tracer.start_span("GET /")
    with _current(parent), record_span(tracer, "cache.get user") as span:
        assert not isinstance(span, RecordedSpan)
        span.set_attribute("statement", "a long statement")
    finished = {span.name: span for span in exporter.get_finished_spans()}
    if sampler is ALWAYS_ON and limits is None:
        assert finished["cache.get user"].attributes == {"statement": "a long statement"}
    elif limits is not None:
        assert finished["cache.get user"].attributes == {"statement": "a long s"}
    else:
        assert "cache.get user" not in finished


def test_a_module_tracer_made_before_the_provider_gives_child_spans() -> None:
    # The service's modules take their tracer at import, a proxy until the provider is set.
    provider, exporter = _provider()
    proxy = trace.ProxyTracer("app.infra.cache")
    proxy._real_tracer = provider.get_tracer("app.infra.cache")
    parent = provider.get_tracer("test").start_span("GET /")
    with _current(parent), record_span(proxy, "cache.get user") as span:
        assert isinstance(span, RecordedSpan)
    step = next(s for s in exporter.get_finished_spans() if s.name == "cache.get user")
    assert step.instrumentation_scope is not None
    assert step.instrumentation_scope.name == "app.infra.cache"


class _Ending(SpanProcessor):
    """Sees each span as it ends, before it is handed on (the SDK's hook for that)."""

    def __init__(self) -> None:
        self.ending: list[str] = []

    def _on_ending(self, span: Any) -> None:
        self.ending.append(span.name)


def test_processors_see_a_child_span_end_and_cannot_change_it_after() -> None:
    provider, exporter = _provider(limits=SpanLimits(max_span_attributes=4))
    ending = _Ending()
    provider.add_span_processor(ending)
    for ours in (False, True):
        child = _record(provider, exporter, _over_the_limit, ours=ours)
        with pytest.raises(TypeError, match="immutable"):
            child._attributes["late"] = 1  # type: ignore[index]
    assert ending.ending == ["cache.get user", "GET /users/{user_id}"] * 2


def _server_span(sampler: Sampler, *headers: tuple[bytes, bytes]) -> tuple[bool, ReadableSpan]:
    provider, exporter = _provider(sampler)
    span = start_server_span(http_scope(*headers), "/api/v1/users/{user_id}", provider)
    recorded = isinstance(span, RecordedSpan)
    end_server_span(span, 500, ERROR)
    (finished,) = exporter.get_finished_spans()
    return recorded, finished


# The same rule as ALWAYS_ON, but not the SDK's own instance: its outcome is left to the SDK.
_ALWAYS = StaticSampler(Decision.RECORD_AND_SAMPLE)
_UNKNOWN = ParentBased(_ALWAYS, remote_parent_sampled=_ALWAYS, local_parent_sampled=_ALWAYS)

CALLER = (
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    (b"tracestate", b"vendor=value"),
)


@pytest.mark.parametrize("headers", [(), CALLER], ids=["root", "sampled-caller"])
def test_a_sampled_server_span_exports_what_the_sdk_span_would(
    headers: tuple[tuple[bytes, bytes], ...],
) -> None:
    # The same rule as ALWAYS_ON, but not the SDK's own instance: its outcome is left to the
    # SDK, which starts the reference span.
    always = StaticSampler(Decision.RECORD_AND_SAMPLE)
    unknown = ParentBased(always, remote_parent_sampled=always, local_parent_sampled=always)
    recorded, ours = _server_span(ParentBased(ALWAYS_ON), *headers)
    by_sdk, sdk = _server_span(unknown, *headers)
    assert recorded and not by_sdk
    comparable_ours, comparable_sdk = _comparable(ours), _comparable(sdk)
    if not headers:  # each root span draws its own trace id
        assert ours.parent is None and sdk.parent is None
        for request in (comparable_ours, comparable_sdk):
            request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x00" * 16
    else:
        assert ours.parent is not None and ours.parent.is_remote
        assert ours.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert comparable_ours == comparable_sdk
    assert ours.status.status_code is StatusCode.ERROR
    assert dict(ours.attributes or {})["http.response.status_code"] == 500
    assert [event.name for event in ours.events] == ["exception"]


@pytest.mark.parametrize("headers", [(), CALLER[:1]], ids=["root", "sampled-caller"])
def test_a_plain_server_span_is_encoded_as_the_sdk_span_would_be(
    headers: tuple[tuple[bytes, bytes], ...],
) -> None:
    """The server span of an ordinary request, encoded from its own fields: the same bytes as
    the SDK's span with the same ids and times, whether its parent is remote or absent."""
    spans = []
    for sampler in (ParentBased(ALWAYS_ON), _UNKNOWN):
        provider, exporter = _provider(sampler)
        span = start_server_span(http_scope(*headers), "/api/v1/users/{user_id}", provider)
        end_server_span(span, 200, None)
        (finished,) = exporter.get_finished_spans()
        spans.append(finished)
    ours, sdk = spans
    assert isinstance(ours, RecordedSpan) and _plain_recorded_span(ours) is not None
    assert (ours.parent is not None) == bool(headers)
    assert service_encode_spans([ours]) == service_encode_spans([_with_ids_and_times_of(sdk, ours)])


def test_a_tracer_switched_off_after_recording_child_spans_records_no_more() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("app.infra.cache")
    parent = provider.get_tracer("test").start_span("GET /")
    with _current(parent):
        with record_span(tracer, "before") as span:
            assert isinstance(span, RecordedSpan)
        tracer._set_tracer_config(_TracerConfig(is_enabled=False))
        with record_span(tracer, "after") as span:
            assert not span.is_recording()
    assert [span.name for span in exporter.get_finished_spans()] == ["before", "GET /"]


class _Watching(SpanProcessor):
    """Every hook a processor has, each recording the span's name and what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.calls.append(("start", span.name, parent_context))

    def _on_ending(self, span: Any) -> None:
        self.calls.append(("ending", span.name, None))

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(("end", span.name, None))


def _child_of_a_sampled_server_span(provider: ServiceTracerProvider) -> None:
    span = start_server_span(http_scope(), "/api/v1/users/{user_id}", provider)
    assert isinstance(span, RecordedSpan)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        tracer = provider.get_tracer("user-service.test")
        with record_span(tracer, "cache.get user", SpanKind.CLIENT) as child:
            assert isinstance(child, RecordedSpan)
    finally:
        otel_context.detach(token)
        end_server_span(span, 200, None)


def test_a_processor_added_later_sees_the_spans_that_start_after() -> None:
    provider, exporter = _provider()
    _child_of_a_sampled_server_span(provider)
    watching = _Watching()
    provider.add_span_processor(watching)
    _child_of_a_sampled_server_span(provider)
    server, child = "GET /api/v1/users/{user_id}", "cache.get user"
    assert [(hook, name) for hook, name, _ in watching.calls] == [
        ("start", server),
        ("start", child),
        ("ending", child),
        ("end", child),
        ("ending", server),
        ("end", server),
    ]
    # A server span is handed the context it started in, as the SDK hands it.
    assert watching.calls[0][2] is None
    assert [span.name for span in exporter.get_finished_spans()] == [child, server] * 2


def test_a_batch_processor_exports_recorded_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = ServiceTracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    try:
        _child_of_a_sampled_server_span(provider)
        assert provider.force_flush(10_000)
        names = [span.name for span in exporter.get_finished_spans()]
        assert names == ["cache.get user", "GET /api/v1/users/{user_id}"]
    finally:
        provider.shutdown()


def test_a_recorded_span_is_written_as_it_ends_and_exported_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The export thread only joins what each span's end wrote: the bytes are the official
    encoder's, and no span is encoded again at export."""
    exporter = InMemorySpanExporter()
    provider = ServiceTracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(EncodeAtEnd())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _child_of_a_sampled_server_span(provider)
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert isinstance(span, RecordedSpan)
        assert span._otlp == otlp_encoding._field(b"\x12", otlp_encoding.encode_span(span))

    def encoded_again(span: ReadableSpan) -> bytes:
        raise AssertionError(f"{span.name} was encoded at export")

    monkeypatch.setattr(otlp_encoding, "encode_span", encoded_again)
    assert service_encode_spans(spans) == encode_spans(spans).SerializePartialToString()


@pytest.mark.parametrize("hook", sorted(_EMPTY_ON_START | _EMPTY_ON_ENDING, key=str))
def test_the_hooks_recorded_spans_skip_are_empty(hook: Callable[..., None]) -> None:
    # Should the SDK give one of them a body, a recorded span would have to call it again.
    (definition,) = ast.parse(textwrap.dedent(inspect.getsource(hook))).body
    assert isinstance(definition, ast.FunctionDef)
    body = definition.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # a docstring
    assert all(isinstance(statement, ast.Pass) for statement in body), hook.__qualname__


@pytest.mark.parametrize("random", [True, False], ids=["random-ids", "other-ids"])
@pytest.mark.parametrize(
    "state", [None, TraceState([("vendor", "value")])], ids=["no-state", "caller-state"]
)
def test_a_sampled_context_is_the_one_the_sdk_would_build(
    random: bool, state: TraceState | None
) -> None:
    """sampled_context skips SpanContext's constructor: every field, the validity flag and
    each field's read through its property come out the same."""
    flags = TraceFlags(TraceFlags.SAMPLED | (TraceFlags.RANDOM_TRACE_ID if random else 0))
    ours = sampled_context(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, random, state)
    sdk = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, False, flags, state)
    assert type(ours) is SpanContext
    assert tuple(ours) == tuple(sdk)
    assert (ours.trace_id, ours.span_id, ours.is_remote, ours.is_valid) == (
        sdk.trace_id,
        sdk.span_id,
        False,
        True,
    )
    assert ours.trace_flags == flags and ours.trace_flags.random_trace_id is random
    assert ours.trace_state == (state if state is not None else TraceState())


class _ForeignSpan(trace.NonRecordingSpan):
    """A Span type this process never makes: left to the API's own lookup."""


@pytest.mark.parametrize(
    "current",
    [
        "recorded",
        "sdk",
        "non-recording",
        "foreign",
        "not-a-span",
        "nothing",
    ],
)
def test_the_current_span_is_the_one_the_api_gives(current: str) -> None:
    provider, _ = _provider()
    spans: dict[str, object] = {
        "recorded": start_server_span(http_scope(), "/api/v1/users/{user_id}", provider),
        "sdk": provider.get_tracer("user-service.test").start_span("sdk"),
        "non-recording": trace.NonRecordingSpan(trace.SpanContext(1, 2, False)),
        "foreign": _ForeignSpan(trace.SpanContext(3, 4, False)),
        "not-a-span": "a value that is not a span",
    }
    context = (
        otel_context.set_value(_SPAN_KEY, spans[current])
        if current in spans
        else otel_context.Context()
    )
    token = otel_context.attach(context)
    try:
        assert current_span() is trace.get_current_span()
        if current in ("recorded", "sdk", "non-recording", "foreign"):
            assert current_span() is spans[current]
        else:
            assert current_span() is trace.INVALID_SPAN
    finally:
        otel_context.detach(token)


def test_constant_attributes_are_written_once_for_every_span_that_starts_with_them() -> None:
    constant = ConstantAttributes({"db.system": "redis", "net.peer.port": 6379})
    provider, exporter = _provider()
    tracer = provider.get_tracer("user-service.test")
    parent = tracer.start_span("GET /")
    with _current(parent):
        for number in range(2):
            with record_span(tracer, "step") as span:
                set_constant_attributes(span, constant)
                span.set_attribute("n", number)
    first, second, _ = exporter.get_finished_spans()
    assert constant.otlp is None  # nothing written until a span is
    assert service_encode_spans([first]) == service_encode_spans(
        [_with_ids_and_times_of(first, first)]
    )
    written = constant.otlp
    assert written == otlp_encoding._attributes(b"\x4a", constant.values)
    # The second span's bytes hold the same block, not a second writing of it.
    constant.otlp = written.replace(b"redis", b"REDIS")
    assert b"REDIS" in service_encode_spans([second])
    assert dict(second.attributes or {}) == {"db.system": "redis", "net.peer.port": 6379, "n": 1}


def test_constant_attributes_cannot_be_changed() -> None:
    constant = ConstantAttributes({"db.system": "redis"})
    with pytest.raises(TypeError):
        constant.values["db.system"] = "other"  # type: ignore[index]
    assert dict(constant.values) == {"db.system": "redis"} and len(constant) == 1
