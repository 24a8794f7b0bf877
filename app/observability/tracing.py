"""OpenTelemetry tracing: a provider per worker process, exporters from the OTEL_* variables."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from contextvars import Token
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
from app.observability.current_span import current_span
from app.observability.recorded_spans import ConstantAttributes, child_span
from app.observability.server_sampling import SERVER_SCOPE, HandOverIds, ServerSampling
from app.settings import Settings

log = structlog.get_logger("app.tracing")

_added_processors: list[SpanProcessor] = []

_K8S_ATTRIBUTES = {
    "K8S_POD_NAME": "k8s.pod.name",
    "K8S_NAMESPACE_NAME": "k8s.namespace.name",
    "K8S_NODE_NAME": "k8s.node.name",
}


def sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporter_endpoint_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracing_enabled() -> bool:
    """Tracing costs nothing unless it has somewhere to send spans."""
    return not sdk_disabled() and exporter_endpoint_configured()


def build_resource(settings: Settings) -> Resource:
    attributes: dict[str, Any] = {
        "service.name": settings.service_name,
        "service.version": settings.service_version or __version__,
        "deployment.environment": settings.app_env.value,
    }
    for variable, attribute in _K8S_ATTRIBUTES.items():
        if value := os.environ.get(variable):
            attributes[attribute] = value
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
    created = Resource.create(attributes)
    return _ProcessResource(created.attributes, created.schema_url)


class _ProcessResource(Resource):
    """The process's resource, hashed once. The OTLP encoder groups every exported span by
    its resource, and the SDK's hash JSON-encodes all the attributes each time: at sampling
    1.0 that was a dump per span. A resource is immutable, so its hash never changes."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def _otlp_exporter() -> SpanExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    # http/protobuf: the official exporter with the service's faster encoder, sending through
    # urllib3 where requests would add only its cost (export_transport says where).
    from app.observability.export_session import export_session
    from app.observability.export_transport import direct_transport, traces_endpoint
    from app.observability.otlp_export import EncodingSpanExporter

    transport = direct_transport(traces_endpoint())
    if transport is not None:
        return EncodingSpanExporter(_transport=transport)
    return EncodingSpanExporter(session=export_session())


def _export_processors(exporter: SpanExporter) -> tuple[SpanProcessor, ...]:
    """The exporter, batched. Before the batch, the service's own OTLP/HTTP encoder gets each
    recorded span's bytes written as the span ends."""
    from app.observability.otlp_export import EncodeAtEnd, EncodingSpanExporter

    batch = BatchSpanProcessor(exporter)
    return (EncodeAtEnd(), batch) if isinstance(exporter, EncodingSpanExporter) else (batch,)


def _children_follow_parent(sampler: Sampler) -> bool:
    """True when this sampler never samples a span whose parent was not sampled (ParentBased
    with its default "not sampled" delegates, as every parentbased_* setting builds it)."""
    if not isinstance(sampler, ParentBased):
        return False
    return all(
        getattr(sampler, attribute, None) is ALWAYS_OFF
        for attribute in ("_remote_parent_not_sampled", "_local_parent_not_sampled")
    )


class ServiceTracerProvider(TracerProvider):
    """The SDK provider, knowing whether an unsampled request can skip its child spans and
    how its sampler decides on a server span."""

    _judged: tuple[Sampler, bool] | None = None
    _sampling: tuple[Sampler, ServerSampling | None] | None = None

    def __init__(self, *, id_generator: IdGenerator | None = None, **kwargs: Any) -> None:
        self._ids = HandOverIds(id_generator or RandomIdGenerator())
        super().__init__(id_generator=self._ids, **kwargs)

    @property
    def server_sampling(self) -> ServerSampling | None:
        sampling = self._sampling
        if sampling is None or sampling[0] is not self.sampler:
            sampling = self._sampling = (self.sampler, ServerSampling.of(self, self._ids))
        return sampling[1]

    @property
    def children_follow_parent(self) -> bool:
        # Asked on every request: judged once per sampler.
        judged = self._judged
        if judged is None or judged[0] is not self.sampler:
            judged = self._judged = (self.sampler, _children_follow_parent(self.sampler))
        return judged[1]


# The span of a request context that request_context() found to record nothing below it.
_DROPPED_SPAN_KEY = otel_context.create_key("user-service-dropped-span")


def request_context(
    span: trace.Span, provider: trace.TracerProvider | None = None
) -> otel_context.Context:
    """The context a request runs in: its server span current and, when nothing in it can be
    recorded (the span was not sampled and the sampler follows the parent), the client
    instrumentations (SQLAlchemy, Redis) switched off. They would otherwise build statement
    text and attributes, and attach contexts, for spans that are dropped anyway. A sampled
    request keeps every span."""
    provider = provider or trace.get_tracer_provider()
    # One copy of the current context with both values, as set_span_in_context and
    # set_value would leave it after a copy each.
    values: dict[str, object] = {**otel_context.get_current(), _SPAN_KEY: span}
    if not span.is_recording() and getattr(provider, "children_follow_parent", False):
        values[_SUPPRESS_INSTRUMENTATION_KEY] = True
        if span.get_span_context().is_valid:  # record_span starts a root span under none
            values[_DROPPED_SPAN_KEY] = span
    return otel_context.Context(values)


def record_span(tracer: trace.Tracer, name: str, kind: SpanKind = SpanKind.INTERNAL) -> Any:
    """A span for our own code's step (`with record_span(tracer, "cache.get") as span`):
    inside a request whose spans are dropped, the request's own non-recording span; inside a
    sampled one, a RecordedSpan. The same result for a tracer at a fraction of the cost."""
    context = otel_context.get_current()
    dropped = context.get(_DROPPED_SPAN_KEY)
    # Still the current span of a request whose spans are all dropped (request_context):
    # the answer below, without its questions.
    if dropped is not None and dropped is context.get(_SPAN_KEY):
        return _Unrecorded(dropped)  # type: ignore[arg-type]  # a span, as stored
    span = current_span()
    if span.get_span_context().is_valid:
        if not span.is_recording():
            provider = trace.get_tracer_provider()
            if getattr(provider, "children_follow_parent", False):
                return _Unrecorded(span)
        elif child := child_span(tracer, name, kind, span):
            return _Current(child)
    return _Current(tracer.start_span(name, kind=kind))


class _Unrecorded:
    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def __enter__(self) -> trace.Span:
        return self.span

    def __exit__(self, *_exc: object) -> None:
        return None


class _Current:
    """`tracer.start_as_current_span` for a span already started, as a plain class: the SDK's
    version stacks two generator-based context managers on every span. Same outcome: the
    span is current inside the block, an exception is recorded on it with an ERROR status
    (Exceptions only, as the SDK does) and propagates, and the span ends on the way out."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, _type: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        span = self._span
        try:
            if self._token is not None:
                otel_context.detach(self._token)
            if isinstance(error, Exception) and span.is_recording():
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        finally:
            span.end()


_server_tracer = trace.get_tracer(SERVER_SCOPE)


def start_server_span(
    scope: MutableMapping[str, Any], template: str, provider: trace.TracerProvider | None = None
) -> trace.Span:
    """The request's SERVER span, named "<METHOD> <route template>" and continuing the
    caller's trace when it sent one. Every attribute goes in at the start: the route's, the
    same for all its requests and made once (ConstantAttributes), then the path. An
    unsampled request builds neither."""
    method: str = scope["method"]
    parent = None
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    fields = _propagated_fields()
    for name, _ in headers:  # a plain loop: any() over a generator cost twice as much
        if name in fields:
            parent = propagate.extract(
                {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
            )
            break
    # The span without the SDK's span machinery, when the sampler's rule is known: the SDK
    # starts every other span.
    sampling: ServerSampling | None = getattr(
        provider or trace.get_tracer_provider(), "server_sampling", None
    )
    tracer: trace.Tracer
    parent_span: trace.SpanContext | None = None
    if sampling is not None:
        # Without a caller's context the request's parent is the current span (none, as a
        # rule), read without the API's isinstance() check.
        current = current_span() if parent is None else trace.get_current_span(parent)
        parent_span = current.get_span_context()
        unsampled = sampling.unsampled_span(parent_span)
        if unsampled is not None:
            return unsampled
        tracer = sampling.tracer
    else:
        tracer = provider.get_tracer(SERVER_SCOPE) if provider else _server_tracer
    server = scope.get("server")
    constant = _route_attributes(
        method,
        scope.get("scheme", "http"),
        template,
        scope.get("http_version"),
        None if server is None else tuple(server),  # a key, whatever iterable ASGI gave
    )
    path = {"url.path": scope["path"]}
    span_name = f"{method} {template}" if template != "none" else method
    try:
        if sampling is not None and parent_span is not None:
            recorded = sampling.sampled_span(span_name, parent_span, parent, constant, path)
            if recorded is not None:
                return recorded
        return tracer.start_span(
            span_name, context=parent, kind=SpanKind.SERVER, attributes={**constant.values, **path}
        )
    finally:
        if sampling is not None:
            sampling.withdraw()


def _route_attributes(
    method: str, scheme: str, template: str, version: str | None, server: tuple[Any, ...] | None
) -> ConstantAttributes:
    """A server span's attributes but its path: the same for every request to one route."""
    key = (method, scheme, template, version, server)
    found = _ROUTE_ATTRIBUTES.get(key)
    if found is not None:
        return found
    attributes: dict[str, Any] = {"http.request.method": method, "url.scheme": scheme}
    if template != "none":
        attributes["http.route"] = template
    if version:
        attributes["network.protocol.version"] = version
    if server:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    found = ConstantAttributes(attributes)
    # Methods, routes and listening addresses are few; any other request's are not kept
    # forever (a client can send any method).
    if len(_ROUTE_ATTRIBUTES) >= _ROUTE_ATTRIBUTES_KEPT:
        _ROUTE_ATTRIBUTES.clear()
    _ROUTE_ATTRIBUTES[key] = found
    return found


_ROUTE_ATTRIBUTES: dict[
    tuple[str, str, str, str | None, tuple[Any, ...] | None], ConstantAttributes
] = {}
_ROUTE_ATTRIBUTES_KEPT = 256


def end_server_span(span: trace.Span, status: int, error: BaseException | None) -> None:
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if error is not None or status >= 500:
            span.set_attribute("error.type", type(error).__qualname__ if error else str(status))
            span.set_status(StatusCode.ERROR)
            if error is not None:
                span.record_exception(error)
    span.end()


def _propagated_fields() -> frozenset[bytes]:
    """The header names the configured propagators read, worked out once per propagator."""
    textmap = propagate.get_global_textmap()
    cached = _FIELDS.get(id(textmap))
    if cached is None:
        cached = frozenset(field.lower().encode() for field in textmap.fields)
        _FIELDS[id(textmap)] = cached
    return cached


_FIELDS: dict[int, frozenset[bytes]] = {}


def start_tracing(
    settings: Settings, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Install this process's TracerProvider. Call after gunicorn forks (the app lifespan).

    `processor` lets tests capture spans in memory; otherwise spans go to the OTLP exporter
    named by the standard variables, batched so requests never wait on the collector.
    """
    if processor is None and not tracing_enabled():
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # The global provider can be set once per process; a second app in the same
        # process (tests) adds its processor to it.
        if processor is not None and processor not in _added_processors:
            current.add_span_processor(processor)
            _added_processors.append(processor)
        return current
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
    provider = ServiceTracerProvider(resource=build_resource(settings))
    for each in (processor,) if processor is not None else _export_processors(_otlp_exporter()):
        provider.add_span_processor(each)
    if processor is not None:
        _added_processors.append(processor)
    trace.set_tracer_provider(provider)
    log.info("tracing_started", exporter="custom" if processor else "otlp")
    return provider


def instrument_clients(engine: AsyncEngine, provider: TracerProvider) -> None:
    # The SQLAlchemy engine only: instrumenting asyncpg as well would duplicate every span.
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=provider, enable_commenter=False
    )
    # Redis at the class level: instrument_client() wraps each new pipeline object as it is
    # made (a proxy per request, sampled or not), this wraps the methods once. It traces every
    # Redis client of the process; the service's is the only one. A second call is a no-op.
    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def flush_tracing(provider: TracerProvider | None, timeout_millis: int = 5000) -> None:
    """Flush batched spans within the graceful-shutdown window (the provider's atexit
    hook shuts it down when the worker process ends)."""
    if provider is not None:
        provider.force_flush(timeout_millis)
