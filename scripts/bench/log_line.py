"""What the access log costs a request, in process: the request id's binding and the access
line as the middleware writes them, beside the structlog calls they replace
(clear_contextvars + bind_contextvars, a bound logger's info); CPU microseconds per request.

usage: python -m scripts.bench.log_line [LEVEL] [ROUNDS]   (LEVEL: INFO by default)

Each request runs in a fresh context (uvicorn gives each its own) holding a span, so the
line carries trace and span ids, and in a loop step of its own on the loop the workers run,
so the step's write is in the figure. Lines go to /dev/null; the two ways alternate round by
round, and the minimum and median of the rounds are printed (a shared machine only ever adds
time).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import statistics
import sys
import time
from collections.abc import Callable

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

REQUESTS = 5000
ARGS = ("GET", "/api/v1/users/{user_id}", "/api/v1/users/7", 200, 0.47, "127.0.0.1")
REQUEST_ID = "0123456789abcdef0123456789abcdef"
SPAN = NonRecordingSpan(
    SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(0),
    )
)


def _service() -> Callable[[], None]:
    from app.observability.logging import access_line, bind_request_id

    line = access_line("app.access")

    def request() -> None:
        bind_request_id(REQUEST_ID)
        otel_context.attach(trace.set_span_in_context(SPAN))
        line(*ARGS)

    return request


def _structlog() -> Callable[[], None]:
    bound = structlog.get_logger("app.access").bind()
    method, route, path, status, duration_ms, client = ARGS

    def request() -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=REQUEST_ID)
        otel_context.attach(trace.set_span_in_context(SPAN))
        bound.info(
            "request",
            method=method,
            route=route,
            path=path,
            status=status,
            duration_ms=duration_ms,
            client=client,
        )

    return request


async def _round(request: Callable[[], None]) -> float:
    started = time.process_time()
    for _ in range(REQUESTS):
        contextvars.Context().run(request)
        await asyncio.sleep(0)  # the step ends: its line is written
    return (time.process_time() - started) / REQUESTS * 1e6


async def _measure(rounds: int) -> dict[str, list[float]]:
    ways = {"service": _service(), "structlog": _structlog()}
    figures: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, request in ways.items():
            figures[name].append(await _round(request))
    return figures


def main() -> None:
    level = sys.argv[1] if len(sys.argv) > 1 else "INFO"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    report = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the lines' sink for the whole run
    from app.observability.logging import configure_logging

    configure_logging(level, "json")
    try:  # the loop the service's workers run (uvicorn picks uvloop when it is there)
        import uvloop

        figures = uvloop.run(_measure(rounds))
    except ImportError:
        figures = asyncio.run(_measure(rounds))
    print(f"log level {level}, {rounds} rounds of {REQUESTS} requests", file=report)
    for name, values in figures.items():
        print(
            f"{name:10s} min {min(values):6.2f}  median {statistics.median(values):6.2f}"
            " us CPU per request",
            file=report,
        )


if __name__ == "__main__":
    main()
