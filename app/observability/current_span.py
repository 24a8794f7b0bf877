"""The current span, taken straight from the context when it is of a type this process makes.

The API's `trace.get_current_span()` asks isinstance() of the abstract Span class for every
read: a Python-level ABCMeta call, twice a request (the access line and the cache span).
This module imports only the API, so a process that logs without tracing (the command line's
tools) loads no SDK; the tracing modules add the SDK's span types when they are imported.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation import _SPAN_KEY

# A set read on every call and added to only at import time.
_SPAN_TYPES: set[type[trace.Span]] = {trace.NonRecordingSpan}


def know_span_types(*types: type[trace.Span]) -> None:
    """Span classes this process makes, read from the context without the API's check."""
    _SPAN_TYPES.update(types)


def current_span() -> trace.Span:
    """trace.get_current_span(), without its isinstance() for the known span types."""
    span = otel_context.get_value(_SPAN_KEY)
    if type(span) in _SPAN_TYPES:
        return span  # type: ignore[return-value]  # one of the Span types above
    if span is None:  # no span at all, as at the start of a request: the API's answer
        return trace.INVALID_SPAN
    return trace.get_current_span()
