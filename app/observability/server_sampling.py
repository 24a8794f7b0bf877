"""The server span's sampling decision, made ahead of the SDK for the samplers whose rule is known.

At a sampling ratio of 0.1 nine requests in ten are not sampled, and the SDK's start_span
spent as much on each of them (a sampler chain called with the span's name and attributes,
a sampling result, the parent's trace state looked up twice) as the rest of the request's
tracing together, to build a span that records nothing. For a ParentBased sampler with its
default delegates over ALWAYS_ON, ALWAYS_OFF or a trace id ratio (every parentbased_*
setting), the decision is the sampler's own rule on the parent's flag or on the trace id:
an unsampled request gets the same non-recording span the SDK would build (same trace id,
flags and trace state, a fresh span id), and a sampled one a RecordedSpan on the very trace
id that was judged (or, where the SDK would record it differently, the SDK's span on that
id). Any other sampler, a disabled tracer or the SDK's own span metrics leave every span to
the SDK.
"""

from __future__ import annotations

import threading

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.util import types

from app.observability.recorded_spans import (
    ConstantAttributes,
    RecordedSpan,
    local_context,
    records_as_sdk,
    sampled_context,
)

SERVER_SCOPE = "user-service.http"
_LOW_BITS = TraceIdRatioBased.TRACE_ID_LIMIT
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSAMPLED_RANDOM = TraceFlags(TraceFlags.RANDOM_TRACE_ID)


class HandOverIds(IdGenerator):
    """The provider's id generator, able to give the SDK the trace id a root span was judged
    on. The id handed over is taken by the next root span the same thread starts: the SDK's
    start_span, called right after."""

    def __init__(self, ids: IdGenerator) -> None:
        self.ids = ids
        self._ahead = threading.local()

    def hand_over(self, trace_id: int | None) -> None:
        self._ahead.trace_id = trace_id

    def generate_trace_id(self) -> int:
        ahead: int | None = getattr(self._ahead, "trace_id", None)
        if ahead is None:
            return self.ids.generate_trace_id()
        self._ahead.trace_id = None
        return ahead

    def generate_span_id(self) -> int:
        return self.ids.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return self.ids.is_trace_id_random()


def _root_bound(sampler: Sampler) -> int | None:
    """The bound a root span's low 64 trace id bits must stay under to be sampled, or None
    when the sampler's rule is not known here."""
    if not isinstance(sampler, ParentBased):
        return None
    delegates = (
        getattr(sampler, "_remote_parent_sampled", None),
        getattr(sampler, "_local_parent_sampled", None),
        getattr(sampler, "_remote_parent_not_sampled", None),
        getattr(sampler, "_local_parent_not_sampled", None),
    )
    if delegates != (ALWAYS_ON, ALWAYS_ON, ALWAYS_OFF, ALWAYS_OFF):
        return None
    root = getattr(sampler, "_root", None)
    if root is ALWAYS_ON:
        return _LOW_BITS + 1
    if root is ALWAYS_OFF:
        return 0
    if type(root) is TraceIdRatioBased:  # a subclass may decide otherwise
        return root.bound
    return None


class ServerSampling:
    """The known sampling rule of one provider's sampler and the SDK tracer of server spans."""

    __slots__ = ("_bound", "_ids", "_random", "_records_as_sdk", "tracer")

    def __init__(self, tracer: Tracer, ids: HandOverIds, bound: int) -> None:
        self.tracer = tracer
        self._ids = ids
        self._bound = bound
        self._random = ids.is_trace_id_random()
        self._records_as_sdk = records_as_sdk(tracer)

    @classmethod
    def of(cls, provider: TracerProvider, ids: HandOverIds) -> ServerSampling | None:
        bound = _root_bound(provider.sampler)
        if bound is None:
            return None
        tracer = provider.get_tracer(SERVER_SCOPE)
        # The SDK's own span metrics count every started span, sampled or not.
        if not isinstance(tracer, Tracer) or tracer.id_generator is not ids:
            return None
        if not isinstance(getattr(tracer, "_tracer_metrics", None), NoOpTracerMetrics):
            return None
        return cls(tracer, ids, bound)

    def unsampled_span(self, parent: SpanContext) -> NonRecordingSpan | None:
        """The span of a request that is not sampled, or None for one that is: the SDK starts
        that one, and a root span gets the trace id judged here."""
        if not self.tracer._is_enabled():
            return None
        ids = self._ids
        if parent.is_valid:
            flags = parent.trace_flags
            if flags.sampled:
                return None
            return NonRecordingSpan(
                local_context(
                    parent.trace_id,
                    ids.generate_span_id(),
                    _UNSAMPLED_RANDOM if flags.random_trace_id else _UNSAMPLED,
                    parent.trace_state,
                )
            )
        trace_id = ids.ids.generate_trace_id()
        if trace_id & _LOW_BITS < self._bound:
            ids.hand_over(trace_id)
            return None
        return NonRecordingSpan(
            local_context(
                trace_id,
                ids.generate_span_id(),
                _UNSAMPLED_RANDOM if self._random else _UNSAMPLED,
            )
        )

    def sampled_span(
        self,
        name: str,
        parent: SpanContext,
        parent_context: Context | None,
        constant: ConstantAttributes,
        attributes: dict[str, types.AttributeValue],
    ) -> RecordedSpan | None:
        """The server span of a request unsampled_span found sampled, or None when the SDK
        must start it (on the trace id handed over)."""
        # unsampled_span, called first, found the tracer enabled.
        if not self._records_as_sdk:
            return None
        tracer = self.tracer
        ids = self._ids
        if parent.is_valid:
            context = sampled_context(
                parent.trace_id,
                ids.generate_span_id(),
                parent.trace_flags.random_trace_id,
                parent.trace_state,
            )
            return RecordedSpan(
                tracer, name, SpanKind.SERVER, context, parent, attributes, parent_context, constant
            )
        # The trace id judged sampled, handed over for this span.
        context = sampled_context(ids.generate_trace_id(), ids.generate_span_id(), self._random)
        return RecordedSpan(
            tracer, name, SpanKind.SERVER, context, None, attributes, parent_context, constant
        )

    def withdraw(self) -> None:
        """Forget a trace id handed over that the SDK did not take (its start_span failed)."""
        self._ids.hand_over(None)
