"""OpenTelemetry tracing: a provider per worker process, exporters from the OTEL_* variables."""

from __future__ import annotations

import os
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
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
    return Resource.create(attributes)


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
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


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
    provider = TracerProvider(resource=build_resource(settings))
    provider.add_span_processor(processor or BatchSpanProcessor(_otlp_exporter()))
    if processor is not None:
        _added_processors.append(processor)
    trace.set_tracer_provider(provider)
    log.info("tracing_started", exporter="custom" if processor else "otlp")
    return provider


def instrument_clients(engine: AsyncEngine, redis_client: Any, provider: TracerProvider) -> None:
    # The SQLAlchemy engine only: instrumenting asyncpg as well would duplicate every span.
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=provider, enable_commenter=False
    )
    RedisInstrumentor().instrument_client(redis_client, tracer_provider=provider)


def flush_tracing(provider: TracerProvider | None, timeout_millis: int = 5000) -> None:
    """Flush batched spans within the graceful-shutdown window (the provider's atexit
    hook shuts it down when the worker process ends)."""
    if provider is not None:
        provider.force_flush(timeout_millis)
