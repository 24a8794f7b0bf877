"""Finished spans to an OTLP ExportTraceServiceRequest, written straight as protobuf bytes.

The SDK's encoder builds a protobuf message object for every span, attribute, value, event
and status, then serialises the tree: most of the export thread's CPU at sampling 1.0. This
writes the same bytes directly (varints, fixed-width numbers and length-prefixed fields, in
field-number order, default values left out as proto3 does), with the same grouping of spans
by resource and instrumentation scope and the same handling of every attribute type.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from struct import Struct
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from app.observability.recorded_spans import UNSET_STATUS, RecordedSpan

_logger = logging.getLogger(__name__)

_DOUBLE = Struct("<d").pack
_FIXED64 = Struct("<Q").pack
_FIXED32 = Struct("<I").pack
_SMALL = [bytes((n,)) for n in range(0x80)]
_INT64_MIN = -(1 << 63)
_INT64_LIMIT = 1 << 63
_UINT64_MASK = (1 << 64) - 1

# opentelemetry.proto.trace.v1.Span.SpanKind
_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
# SpanFlags: the context's is_remote is known, and whether it is set.
_FLAGS_LOCAL = b"\x85\x01" + _FIXED32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _FIXED32(0x300)
_LINK_FLAGS_LOCAL = b"\x35" + _FIXED32(0x100)
_LINK_FLAGS_REMOTE = b"\x35" + _FIXED32(0x300)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:  # a span's or a long value's length: two bytes, without the loop
        return (value & 0x7F | 0x80 | (value >> 7) << 8).to_bytes(2, "little")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


def _text(tag: bytes, value: str | None) -> bytes:
    """A string field; proto3 leaves an empty one out."""
    return _field(tag, value.encode()) if value else b""


def _value(value: Any) -> bytes:
    """An AnyValue's body. Its oneof members are written even when they hold a default."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value < _INT64_LIMIT:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _value(item)) for item in value]))
    if isinstance(value, Mapping):
        pairs = [_field(b"\x0a", _key_value(str(key), item)) for key, item in value.items()]
        return _field(b"\x32", b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    encoded_key = _KEYS.get(key)
    if encoded_key is None:
        encoded_key = _text(b"\x0a", key)
        if len(_KEYS) < _KEYS_KEPT and len(key) <= _KEPT_LENGTH:
            _KEYS[key] = encoded_key
    if type(value) is str:  # most attributes: no walk through the type checks
        return encoded_key + _field(b"\x12", _field(b"\x0a", value.encode()))
    return encoded_key + _field(b"\x12", _value(value))


# Attribute names repeat from span to span: their encoded form is kept (a bounded number, in
# case some code makes names from data).
_KEYS: dict[str, bytes] = {}
_KEYS_KEPT = 1024

# So do most whole attributes (method, route, server address, db.system, the statement): each
# encoded field (its tag, its length and the key-value pair) is kept, per field tag and per
# value type so that True and 1 stay apart. A store is emptied when full, so values that never
# repeat (paths with ids) cannot crowd out those that do, and it holds short pairs only: a
# stack trace is encoded each time, never copied into it.
_FIELDS: dict[bytes, dict[type, dict[tuple[str, Any], bytes]]] = {}
_FIELDS_KEPT = 4096
_KEPT_LENGTH = 256


def _kept_fields(tag: bytes) -> dict[type, dict[tuple[str, Any], bytes]]:
    stores = _FIELDS.get(tag)
    if stores is None:
        stores = _FIELDS[tag] = {str: {}, int: {}, bool: {}}
    return stores


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a repeated KeyValue field; one that cannot be encoded is logged and
    left out, the others still go."""
    if not attributes:
        return b""
    # A finished span's attributes are immutable: read the dict under them directly rather
    # than through BoundedAttributes' locked, copying iteration and a lookup per key.
    return _attribute_items(tag, getattr(attributes, "_dict", attributes).items())


def _attribute_items(tag: bytes, items: Iterable[tuple[str, Any]]) -> bytes:
    stores = _kept_fields(tag)
    out = []
    for key, value in items:
        kept = stores.get(type(value))
        if kept is not None:
            encoded = kept.get((key, value))
            if encoded is not None:
                out.append(encoded)
                continue
        try:
            encoded = _field(tag, _key_value(key, value))
        except Exception as error:  # any bad value drops only its key
            _logger.exception("Failed to encode key %s: %s", key, error)
            continue
        if (
            kept is not None
            and len(key) <= _KEPT_LENGTH
            and (type(value) is not str or len(value) <= _KEPT_LENGTH)
        ):
            if len(kept) >= _FIELDS_KEPT:
                kept.clear()
            kept[key, value] = encoded
        out.append(encoded)
    return b"".join(out)


def _fixed64(tag: bytes, value: int | None) -> bytes:
    return tag + _FIXED64(value) if value else b""


def _count(tag: bytes, value: int) -> bytes:
    return tag + _varint(value) if value else b""


def _plain_recorded_span(span: ReadableSpan) -> bytes | None:
    """The body of a RecordedSpan with nothing but plain attributes (every span of a sampled
    cached read), read from its own fields: the general path below asks a dozen properties
    and writes several empty fields, a fifth of such a span's encoding (python -m
    scripts.bench.span_encoding: 5.3 -> 4.2 us per span). None for any other span."""
    if type(span) is not RecordedSpan:
        return None
    attributes = span._attributes
    if span._events or span._links or type(attributes) is not dict:
        return None
    context = span._context
    parent = span._parent
    start, end = span._start_time, span._end_time
    if context is None or not (start and end):
        return None
    # Contexts are tuples: unpacked, not read through a property call per field.
    trace_id, span_id, _, _, trace_state, _ = context
    # The shared empty state is asked by identity: a TraceState's truth is a Python call.
    if trace_state is not DEFAULT_TRACE_STATE and trace_state:
        return None
    name = span._name
    kind = span._kind
    # Keyed by the kind's plain value: hashing the Enum itself is a Python-level call.
    head = _HEADS.get((name, kind._value_))
    if head is None:
        head = _head(name, kind)
    # The ids' fields in one pack: the trace id as its two big-endian halves.
    if parent is None:
        ids = _IDS(0x0A, 0x10, trace_id >> 64, trace_id & _UINT64_MASK, 0x12, 0x08, span_id)
        flags = _FLAGS_LOCAL
    else:
        _, parent_span_id, parent_remote, _, _, _ = parent
        ids = _IDS_AND_PARENT(
            0x0A,
            0x10,
            trace_id >> 64,
            trace_id & _UINT64_MASK,
            0x12,
            0x08,
            span_id,
            0x22,
            0x08,
            parent_span_id,
        )
        flags = _FLAGS_REMOTE if parent_remote else _FLAGS_LOCAL
    constant = span._constant
    if constant is None:
        encoded_attributes = _attributes(b"\x4a", attributes)
    else:
        # Its first attributes are the constant ones, in order: written once for every span
        # that starts with them (ConstantAttributes); only those set after are written here.
        written = constant.otlp
        if written is None:
            written = constant.otlp = _attributes(b"\x4a", constant.values)
        encoded_attributes = written
        size = len(constant)
        if len(attributes) > size:
            encoded_attributes += _attribute_items(b"\x4a", islice(attributes.items(), size, None))
    status = span._status
    return b"".join(
        (
            ids,
            head,
            _TIMES(0x39, start, 0x41, end),
            encoded_attributes,
            _UNSET_STATUS_FIELD if status is UNSET_STATUS else _status(status),
            flags,
        )
    )


# The name and kind fields of a span, kept per name and kind value: a bounded number.
_HEADS: dict[tuple[str, int], bytes] = {}
_HEADS_KEPT = 1024
_TIMES = Struct("<BQBQ").pack
_IDS = Struct(">BBQQBBQ").pack
_IDS_AND_PARENT = Struct(">BBQQBBQBBQ").pack


def _status(status: Status) -> bytes:
    code = status.status_code.value
    description = status.description
    if code or description:
        body = _text(b"\x12", description) + (b"\x18" + _varint(code) if code else b"")
        return _field(b"\x7a", body)
    return _UNSET_STATUS_FIELD


_UNSET_STATUS_FIELD = b"\x7a\x00"  # an unset status: present, and empty


def _head(name: str, kind: SpanKind) -> bytes:
    head = (_field(b"\x2a", name.encode()) if name else b"") + _KIND[kind]
    if len(_HEADS) >= _HEADS_KEPT:
        _HEADS.clear()
    _HEADS[name, kind._value_] = head
    return head


def encode_span(span: ReadableSpan) -> bytes:
    """One Span message's body."""
    plain = _plain_recorded_span(span)
    if plain is not None:
        return plain
    context = span.context
    assert context is not None  # a finished SDK span always has one
    parent = span.parent
    trace_state = context.trace_state
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if trace_state:
        parts.append(
            _text(b"\x1a", ",".join(f"{key}={value}" for key, value in trace_state.items()))
        )
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    name = span.name
    if name:
        parts.append(_field(b"\x2a", name.encode()))
    parts.append(_KIND[span.kind])
    if start := span.start_time:
        parts.append(b"\x39" + _FIXED64(start))
    if end := span.end_time:
        parts.append(b"\x41" + _FIXED64(end))
    # The span's own containers where it has them, not the copies its properties make.
    attributes = getattr(span, "_attributes", None)
    parts.append(_attributes(b"\x4a", span.attributes if attributes is None else attributes))
    if dropped := span.dropped_attributes:
        parts.append(b"\x50" + _varint(dropped))
    events = getattr(span, "_events", None)
    if events is None:
        events = span.events
    if events:
        for event in events:
            body = (
                _fixed64(b"\x09", event.timestamp)
                + _text(b"\x12", event.name)
                + _attributes(b"\x1a", event.attributes)
                + _count(b"\x20", event.dropped_attributes)
            )
            parts.append(_field(b"\x5a", body))
    parts.append(_count(b"\x60", span.dropped_events))
    links = getattr(span, "_links", None)
    if links is None:
        links = span.links
    if links:
        for link in links:
            link_context = link.context
            body = (
                b"\x0a\x10"
                + link_context.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + link_context.span_id.to_bytes(8, "big")
                + _attributes(b"\x22", link.attributes)
                + _count(b"\x28", link.dropped_attributes)
                + (_LINK_FLAGS_REMOTE if link_context.is_remote else _LINK_FLAGS_LOCAL)
            )
            parts.append(_field(b"\x6a", body))
    parts.append(_count(b"\x70", span.dropped_links))
    status = span.status
    if status is not None:
        parts.append(_status(status))
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


def encode_at_end(span: ReadableSpan) -> None:
    """Write a finished RecordedSpan's Span field now, for encode_spans to take as it is.

    Called on the thread that ends the span (a request's event loop): the export thread then
    only joins bytes. Encoding a batch of 512 spans there took some 3 ms of CPU in one burst,
    and on a busy worker the event loop shared its core and the GIL with that burst, so the
    requests that arrived meanwhile waited: the span export set the worker's p99. Spread over
    the requests that made the spans, the same work delays none of them by more than its own
    few microseconds. A finished span does not change, so the bytes stay its bytes."""
    if type(span) is RecordedSpan:
        # encode_span's and _field's steps, without their two calls per span.
        body = _plain_recorded_span(span)
        if body is None:
            body = encode_span(span)
        span._otlp = b"\x12" + _varint(len(body)) + body


def _span_field(span: ReadableSpan) -> bytes:
    if type(span) is RecordedSpan:
        written = span._otlp
        if written is not None:
            return written
    return _field(b"\x12", encode_span(span))


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return (
        _text(b"\x0a", scope.name)
        + _text(b"\x12", scope.version)
        + _attributes(b"\x1a", scope.attributes)
    )


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised ExportTraceServiceRequest for a batch: spans grouped by resource, then
    by instrumentation scope, each group in the order its first span came."""
    grouped: dict[Any, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        by_scope = grouped.get(span.resource)
        if by_scope is None:
            by_scope = grouped[span.resource] = {}
        scope = span.instrumentation_scope or None
        encoded = by_scope.get(scope)
        if encoded is None:
            encoded = by_scope[scope] = []
        encoded.append(_span_field(span))
    out = []
    for resource, by_scope in grouped.items():
        scope_spans = []
        for scope, encoded in by_scope.items():
            body = (
                _field(b"\x0a", _scope(scope))
                + b"".join(encoded)
                + _text(b"\x1a", scope.schema_url if scope else None)
            )
            scope_spans.append(_field(b"\x12", body))
        body = (
            _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
            + b"".join(scope_spans)
            + _text(b"\x1a", resource.schema_url)
        )
        out.append(_field(b"\x0a", body))
    return b"".join(out)
