"""What encoding a batch of exported spans costs, in process: the service's OTLP encoder beside
the official one (message objects, then SerializePartialToString); CPU microseconds per span.

usage: python -m scripts.bench.span_encoding [ROUNDS]

The batch is what a sampled cached read leaves in the export queue, recorded by the service's
own tracer provider as a request records them: per request its SERVER span with the HTTP
attributes, the admission pipeline's CLIENT span with the Redis attributes and the cache
lookup's INTERNAL span, 512 spans as the batch processor exports them. Both encoders must
produce the same bytes before anything is timed; they alternate round by round, and the
minimum and median of the rounds are printed (a shared machine only ever adds time).
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind

from app.observability.otlp_encoding import encode_spans
from app.observability.otlp_export import EncodeAtEnd
from app.observability.recorded_spans import (
    ConstantAttributes,
    RecordedSpan,
    set_constant_attributes,
)
from app.observability.tracing import (
    ServiceTracerProvider,
    build_resource,
    end_server_span,
    record_span,
    start_server_span,
)
from app.settings import Settings

BATCH = 512
# As the service gives them to these spans: shared by all, made once.
PIPELINE_ATTRIBUTES = ConstantAttributes(
    {
        "db.statement": "MGET ? ? ?\nINCRBY ? ?\nPEXPIREAT ? ?",
        "db.redis.pipeline_length": 3,
        "db.system": "redis",
        "db.redis.database_index": 0,
        "net.peer.name": "redis",
        "net.peer.port": 6379,
        "net.transport": "ip_tcp",
    }
)
HIT_ATTRIBUTES = ConstantAttributes({"cache.result": "hit", "cache.hit": True})


def cached_read_spans(count: int = BATCH, written: bool = False) -> list[ReadableSpan]:
    """`written`: each span's OTLP bytes written as it ended, as the service's OTLP/HTTP
    exporter gets them (otherwise the encoder has them all to write)."""
    exporter = InMemorySpanExporter()
    # The service's own provider and resource, sampling every request: its spans are the
    # ones a sampled request records (RecordedSpans), not the SDK's.
    provider = ServiceTracerProvider(
        resource=build_resource(Settings(_env_file=None)), sampler=ParentBased(ALWAYS_ON)
    )
    if written:
        provider.add_span_processor(EncodeAtEnd())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    redis = provider.get_tracer("user-service.redis")
    cache = provider.get_tracer("user-service.cache")
    for _ in range(count // 3 + 1):
        scope = {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": f"/api/v1/users/{uuid.uuid4()}",
            "http_version": "1.1",
            "server": ("10.0.0.12", 8000),
            "headers": [(b"host", b"users.example")],
        }
        server = start_server_span(scope, "/api/v1/users/{user_id}", provider)
        token = otel_context.attach(trace.set_span_in_context(server))
        try:
            with record_span(redis, "MGET INCRBY PEXPIREAT", SpanKind.CLIENT) as span:
                set_constant_attributes(span, PIPELINE_ATTRIBUTES)
            with record_span(cache, "cache.get user") as span:
                set_constant_attributes(span, HIT_ATTRIBUTES)
        finally:
            otel_context.detach(token)
        end_server_span(server, 200, None)
    spans = list(exporter.get_finished_spans())[:count]
    if not all(isinstance(span, RecordedSpan) for span in spans):
        raise SystemExit("the service's provider did not record these spans itself")
    return spans


def _per_span(encode: Callable[[], object], spans: int, repeat: int = 5) -> float:
    started = time.process_time()
    for _ in range(repeat):
        encode()
    return (time.process_time() - started) / repeat / spans * 1e6


def main(argv: Sequence[str]) -> None:
    rounds = int(argv[0]) if argv else 15
    spans = cached_read_spans()
    if encode_spans(spans) != official(spans).SerializePartialToString():
        raise SystemExit("the service's encoder does not write the official encoder's bytes")
    ways: dict[str, Callable[[], object]] = {
        "official": lambda: official(spans).SerializePartialToString(),
        "service": lambda: encode_spans(spans),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, encode in ways.items():
            times[name].append(_per_span(encode, len(spans)))
    print(f"{len(spans)} spans of cached reads, {rounds} rounds, CPU us per span:")
    for name, values in times.items():
        print(f"  {name:9s} min {min(values):6.2f}  median {statistics.median(values):6.2f}")
    ratio = statistics.median(times["official"]) / statistics.median(times["service"])
    print(f"  official / service (medians): {ratio:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
