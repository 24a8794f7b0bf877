"""Spans of a sampled request whose sampling is already decided, recorded without the SDK's
span machinery.

A sampled cached read records three spans, and the SDK took 17-19 us of the request's CPU to
start, fill and end each: the sampler chain (asked again for a child whose parent already
decided), a lock and a cleaning pass for every attribute, two more locks and bounded
containers for events and links that are never added. Where the outcome is known (a child
of a sampled span of this process under a sampler that samples every child of a sampled
parent, or a server span ServerSampling judged sampled) this span records the same data in a
plain dict and, at its end, hands itself, a finished SDK ReadableSpan, to the provider's span
processors: the processors and exporters see no difference. About 3 us.

A span is touched by the one request that made it, so it takes no lock. Anything the SDK
would do differently falls back to the SDK: another sampler, a disabled tracer, the SDK's
own span metrics, or a limit on attribute value length (which the SDK applies by cutting
values). An attribute this span cannot simply store (a sequence, an invalid key or value, a
key set again, the count limit reached) moves its attributes into the SDK's own mapping.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Mapping
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import Any, Final, NamedTuple, cast

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    Tracer,
)
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.util import types

from app.observability.current_span import know_span_types

_logger = logging.getLogger(__name__)
_PLAIN: Final = frozenset({str, bool, int, float})
_STR: Final = frozenset({str})
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM: Final = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
# The status every RecordedSpan starts with; the encoder writes it without reading it.
UNSET_STATUS: Final = Status(StatusCode.UNSET)


def children_always_sampled(sampler: Sampler) -> bool:
    """True when the sampler samples every child of a sampled parent, local or remote, with
    the span's own attributes and the parent's trace state."""
    return isinstance(sampler, ParentBased) and all(
        getattr(sampler, attribute, None) is ALWAYS_ON
        for attribute in ("_local_parent_sampled", "_remote_parent_sampled")
    )


def sdk_tracer(tracer: trace.Tracer) -> Tracer | None:
    """The SDK tracer behind `tracer` (a module's `trace.get_tracer(...)` is a proxy until
    the provider is set), or None."""
    real = tracer._tracer if isinstance(tracer, trace.ProxyTracer) else tracer
    return real if isinstance(real, Tracer) else None


def records_as_sdk(tracer: Tracer) -> bool:
    """Whether a RecordedSpan records what this tracer's own span would, once the sampling
    decision is known: fixed for the tracer's life (whether it is enabled is not, and is
    asked apart)."""
    return (
        isinstance(tracer._tracer_metrics, NoOpTracerMetrics)
        and tracer._span_limits.max_span_attribute_length is None
        and tracer._span_limits.max_attribute_length is None
    )


def _all_plain(attributes: Mapping[str, types.AttributeValue]) -> bool:
    """Every value of a plain type, every key a non-empty str: a span may store them as they
    are. Asked in C (set operations over the types), not in a loop of Python."""
    return (
        _PLAIN.issuperset(map(type, attributes.values()))
        and _STR.issuperset(map(type, attributes))
        and "" not in attributes
    )


class ConstantAttributes:
    """Attributes that many spans start with and that never change: a route's server
    attributes, a Redis pipeline's description, a cache lookup's result. A recorded span given
    them takes them in one step, without checking each again, and the encoder writes them
    once for every span that starts with them (otlp_encoding): for the three spans of a sampled
    cached read, the attributes were a quarter of their cost. Nothing outside this class
    changes its mapping."""

    __slots__ = ("_values", "otlp", "plain")

    def __init__(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        self._values: dict[str, types.AttributeValue] = dict(attributes)
        # Only plain values, under non-empty str keys, are taken as they are; any other
        # value goes through the span's own checks each time (set_constant_attributes).
        self.plain = _all_plain(self._values)
        # The span attributes field of all of them, written by the encoder when first asked.
        self.otlp: bytes | None = None

    @property
    def values(self) -> Mapping[str, types.AttributeValue]:
        return MappingProxyType(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ConstantAttributes({self._values!r})"


def set_constant_attributes(span: trace.Span, constant: ConstantAttributes) -> None:
    """`span.set_attributes(constant)`, in one step for a recorded span that has no
    attributes yet."""
    if type(span) is RecordedSpan:
        span.set_constant_attributes(constant)
    elif span.is_recording():  # a span that records nothing is not asked to
        span.set_attributes(constant.values)


class RecordedSpan(trace.Span, ReadableSpan):
    """A sampled, recording span on a context already decided. Readable as the SDK's span
    is, for processors that look at it as it starts or ends."""

    # Its OTLP Span field, once written as it ended (otlp_encoding.encode_at_end).
    _otlp: bytes | None = None
    # The constant attributes its attributes start with, in their order, when it was given
    # them before any other (set_constant_attributes); the encoder writes them as one.
    _constant: ConstantAttributes | None = None

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        kind: SpanKind,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: Mapping[str, types.AttributeValue] | None = None,
        parent_context: Context | None = None,
        constant: ConstantAttributes | None = None,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._kind = kind
        self._parent = parent
        self._context = context
        self._attributes: dict[str, types.AttributeValue] | BoundedAttributes = {}
        limit = tracer._span_limits.max_span_attributes
        self._max_attributes = limit if limit is not None else sys.maxsize
        self._events: BoundedList[Event] | tuple[()] = ()
        self._links: BoundedList[Link] | tuple[()] = ()
        self._status = UNSET_STATUS
        self._resource = tracer.resource
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._end_time: int | None = None
        if constant is not None:
            self.set_constant_attributes(constant)
        if attributes:
            self.set_attributes(attributes)
        self._start_time = time_ns()
        for on_start in processor_calls(tracer.span_processor).on_start:
            on_start(self, parent_context=parent_context)

    def get_span_context(self) -> SpanContext:
        # Set once, in __init__; no cast(), which is a Python-level call on every read.
        return self._context  # type: ignore[return-value]

    def is_recording(self) -> bool:
        return self._end_time is None

    # The SDK's properties ask isinstance() of an abstract base class on each read (the
    # exporter reads all three for every span); these containers are only ever ours.
    @property
    def dropped_attributes(self) -> int:
        attributes = self._attributes
        return 0 if type(attributes) is dict else cast("BoundedAttributes", attributes).dropped

    @property
    def dropped_events(self) -> int:
        events = self._events
        return 0 if type(events) is tuple else cast("BoundedList[Event]", events).dropped

    @property
    def dropped_links(self) -> int:
        links = self._links
        return 0 if type(links) is tuple else cast("BoundedList[Link]", links).dropped

    def _ended(self, method: str | None = None) -> bool:
        if self._end_time is None:
            return False
        if method is None:
            _logger.warning("Setting attribute on ended span.")
        else:
            _logger.warning("Tried calling %s on an ended span.", method)
        return True

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._ended():
            return
        attributes = self._attributes
        if (
            type(attributes) is dict
            and type(value) in _PLAIN
            and type(key) is str
            and key
            and key not in attributes
            and len(attributes) < self._max_attributes
        ):
            attributes[key] = value
            return
        self._bounded()[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._ended():
            return
        own = self._attributes
        if (
            type(own) is dict
            and len(own) + len(attributes) <= self._max_attributes
            and own.keys().isdisjoint(attributes)
            and _all_plain(attributes)
        ):
            own.update(attributes)
            return
        self._bounded()._set_items(attributes)

    def set_constant_attributes(self, constant: ConstantAttributes) -> None:
        """set_attributes(constant), without checking its plain values again when this span
        has no attributes yet: they are then its first, in order, and stay so while its
        attributes are a plain dict (a key set again or the limit passed moves them into the
        SDK's mapping, which the encoder writes as it writes any)."""
        own = self._attributes
        if (
            constant.plain
            and type(own) is dict
            and not own
            and len(constant) <= self._max_attributes
            and self._end_time is None
        ):
            own.update(constant._values)
            self._constant = constant
            return
        self.set_attributes(constant.values)

    def _bounded(self) -> BoundedAttributes:
        """The SDK's own attribute mapping, from the first attribute this span cannot simply
        store (a sequence, an invalid key or value, a key set again, the limit reached) on:
        its cleaning, ordering and dropping rules then apply to every attribute, as the SDK's
        span applies them."""
        attributes = self._attributes
        if isinstance(attributes, BoundedAttributes):
            return attributes
        bounded = self._attributes = BoundedAttributes(
            self._tracer._span_limits.max_span_attributes, attributes, immutable=False
        )
        return bounded

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._ended("_add_event"):
            return
        limits = self._tracer._span_limits
        if not isinstance(self._events, BoundedList):
            self._events = BoundedList(limits.max_events)
        bounded = self._frozen(limits.max_event_attributes, attributes)
        self._events.append(Event(name=name, attributes=bounded, timestamp=timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        if self._ended("_add_link"):
            return
        limits = self._tracer._span_limits
        if not isinstance(self._links, BoundedList):
            self._links = BoundedList(limits.max_links)
        self._links.append(
            Link(context=context, attributes=self._frozen(limits.max_link_attributes, attributes))
        )

    def _frozen(self, limit: int | None, attributes: types.Attributes) -> BoundedAttributes:
        """An event's or link's attributes, cleaned and bounded as the SDK's span keeps them."""
        return BoundedAttributes(
            limit,
            attributes,
            max_value_len=self._tracer._span_limits.max_attribute_length,
            immutable=True,
        )

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("set_status") or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _logger.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        recorded: dict[str, types.AttributeValue] = {
            EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            _logger.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        # Asked by type: isinstance() of the SDK's mapping, an abstract base class, is a
        # Python-level call on every span. Only _bounded() makes one, of exactly this type.
        attributes = self._attributes
        if type(attributes) is BoundedAttributes:
            attributes._immutable = True  # as the SDK's span freezes its own at end
        calls = processor_calls(self._tracer.span_processor)
        for on_ending in calls.on_ending:
            on_ending(self)
        # The span itself, a ReadableSpan that nothing changes any more: the SDK hands on a
        # copy of its span, whose lock and limits a processor must not reach.
        for on_end in calls.on_end:
            on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        # As the SDK's span: an exception escaping the block is recorded, with an ERROR status.
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)


# The SDK's processors whose on_start and _on_ending do nothing.
_EMPTY_ON_START: Final = frozenset(
    {SpanProcessor.on_start, BatchSpanProcessor.on_start, SimpleSpanProcessor.on_start}
)
_EMPTY_ON_ENDING: Final = frozenset(
    {SpanProcessor._on_ending, BatchSpanProcessor._on_ending, SimpleSpanProcessor._on_ending}
)


class ProcessorCalls(NamedTuple):
    """What a recorded span calls as it starts and ends, worked out from `members`."""

    members: tuple[SpanProcessor, ...]
    on_start: tuple[Callable[..., None], ...]
    on_ending: tuple[Callable[[Any], None], ...]
    on_end: tuple[Callable[[Any], None], ...]


def processor_calls(processor: SpanProcessor) -> ProcessorCalls:
    """The provider's processors as a recorded span calls them: each member in turn, as the
    provider's list would call it, leaving out the SDK processors' empty on_start and
    _on_ending, and handing a batch processor's span straight to its queue (its on_end only
    checks first that the span is sampled, which a recorded span always is). The list costs
    a sampled request three calls per span and hook; worked out again when a processor is
    added (the provider replaces its tuple of members)."""
    members: tuple[SpanProcessor, ...] = (
        processor._span_processors
        if type(processor) is SynchronousMultiSpanProcessor
        else (processor,)
    )
    calls = _CALLS.get(processor)
    if calls is not None and calls.members is members:
        return calls
    if len(_CALLS) >= 64:  # processors made on the fly (tests) must not grow this forever
        _CALLS.clear()
    calls = _CALLS[processor] = ProcessorCalls(
        members,
        tuple(each.on_start for each in members if type(each).on_start not in _EMPTY_ON_START),
        tuple(each._on_ending for each in members if type(each)._on_ending not in _EMPTY_ON_ENDING),
        tuple(_on_end(each) for each in members),
    )
    return calls


def _on_end(processor: SpanProcessor) -> Callable[[Any], None]:
    if type(processor) is BatchSpanProcessor:
        emit = getattr(getattr(processor, "_batch_processor", None), "emit", None)
        if callable(emit):
            return cast("Callable[[Any], None]", emit)
    return processor.on_end


_CALLS: dict[SpanProcessor, ProcessorCalls] = {}


def local_context(
    trace_id: int, span_id: int, flags: TraceFlags, state: TraceState | None = None
) -> SpanContext:
    """A context for a span of this process, of ids already in range (a parent's or a fresh
    trace id, a fresh span id). Built as SpanContext.__new__ builds it, without its
    Python-level call and range checks: one of them on every request."""
    return tuple.__new__(
        SpanContext,
        (
            trace_id,
            span_id,
            False,
            flags,
            DEFAULT_TRACE_STATE if state is None else state,
            trace_id != 0 and span_id != 0,
        ),
    )


def sampled_context(
    trace_id: int, span_id: int, random: bool, state: TraceState | None = None
) -> SpanContext:
    """A sampled span's context, flagged as the SDK flags it."""
    return local_context(trace_id, span_id, _SAMPLED_RANDOM if random else _SAMPLED, state)


know_span_types(RecordedSpan, SdkSpan)


def child_span(
    tracer: trace.Tracer, name: str, kind: SpanKind, parent: trace.Span
) -> RecordedSpan | None:
    """A RecordedSpan child of `parent` (a sampled, recording span of this process), or None
    when the SDK's tracer must start it."""
    real = _CHILD_TRACERS.get(tracer)
    if real is None:
        real = sdk_tracer(tracer)
        if (
            real is None
            or not real._is_enabled()
            or not children_always_sampled(real.sampler)
            or not records_as_sdk(real)
        ):
            return None
        if len(_CHILD_TRACERS) >= 256:  # tracers made on the fly must not grow this forever
            _CHILD_TRACERS.clear()
        _CHILD_TRACERS[tracer] = real
    elif not real._is_enabled():  # the one judgement that can change: a tracer switched off
        return None
    context = parent.get_span_context()
    # A SpanContext is a tuple: unpacked, not read through a property call per field.
    trace_id, _, _, flags, state, _ = context
    return RecordedSpan(
        real,
        name,
        kind,
        sampled_context(
            trace_id,
            real.id_generator.generate_span_id(),
            flags & TraceFlags.RANDOM_TRACE_ID != 0,
            state,
        ),
        context,
    )


# The SDK tracer behind each tracer found able to record child spans (its sampler, limits
# and span metrics are its own for life): a module's tracer is asked on every sampled span.
# Only a tracer that can is kept, so a module's proxy is looked at again until its provider
# is set.
_CHILD_TRACERS: dict[trace.Tracer, Tracer] = {}
