"""The JSON log lines of our own events, read from a real process's stdout: byte for byte what
structlog's standard processor chain writes, none lost at exit or across a fork, none split
or reordered when a loop step writes many."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

from app.observability.logging import UtcTimestamp, _PendingLines

REPO = Path(__file__).resolve().parents[1]
_TIMESTAMP = re.compile(rb'"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z)"')


def _run(script: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTEL_SDK_DISABLED": "true"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )


def test_the_timestamp_is_isoformat_of_the_same_instant() -> None:
    stamp = UtcTimestamp()
    second = 1_790_000_000 * 1_000_000_000
    instants = [
        second,  # a whole second: isoformat() writes no fraction
        second + 999,  # below a microsecond: floored to a whole second as well
        second + 1_000,
        second + 123_456_789,
        second + 999_999_999,
        second + 1_000_000_000,  # the next second, after its predecessor was cached
        second - 1,  # and back: the cache follows the clock, whichever way it moves
        0,
        1_234_567_891_000_001_000,
    ]
    for ns in instants:
        whole, rest = divmod(ns, 1_000_000_000)
        expected = datetime.datetime.fromtimestamp(whole, tz=datetime.UTC).replace(
            microsecond=rest // 1000
        )
        assert stamp(ns) == expected.isoformat().replace("+00:00", "Z"), ns
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp().encode())


# Each event is logged twice from the same line: through the service's configuration (to the
# process's real stdout) and through structlog's standard chain, the one the service used to
# configure, into a buffer written to stderr afterwards.
_SAME_AS_STANDARD_CHAIN = """
    import asyncio, io, logging, sys
    import orjson, structlog
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from app.observability.logging import add_trace_context, configure_logging

    configure_logging("INFO", "json")
    ours = structlog.get_logger("app.access")
    reference_out = io.BytesIO()

    class Reference:
        name = "app.access"
        def msg(self, line):
            reference_out.write(line)
        info = warning = warn = error = exception = msg

    def render(_logger, _method, event_dict):
        return orjson.dumps(event_dict, default=str, option=orjson.OPT_APPEND_NEWLINE)

    reference = structlog.wrap_logger(
        Reference(),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            add_trace_context,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )

    class Opaque:
        def __str__(self):
            return "opaque value"

    def both(level, /, *args, **kw):
        for logger in (ours, reference):
            getattr(logger, level)(*args, **kw)

    def events():
        both("info", "request", method="GET", route="/api/v1/users/{user_id}",
             path="/api/v1/users/7", status=200, duration_ms=0.47, client="127.0.0.1")
        both("info", "request", method="GET", route="none", path="/x", status=404,
             duration_ms=1.0, client=None)
        both("warning", "odd", count=3, opaque=Opaque())
        both("warn", "deprecated alias")
        both("info", "with %s args", "positional")
        both("info", "a stack", stack_info=True)
        both("info", "no stack", stack_info=False, exc_info=False)
        try:
            raise ValueError("broken")
        except ValueError as error:
            both("exception", "unhandled_error", path="/p")
            both("error", "given", exc_info=error)
        both("info", "shadowing the context", request_id="explicit")

    structlog.contextvars.bind_contextvars(request_id="r-1", trace_id="caller-trace")
    events()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="r-2")
    span = NonRecordingSpan(SpanContext(
        trace_id=0xABC, span_id=0x12, is_remote=False, trace_flags=TraceFlags(1)))
    with trace.use_span(span):
        events()
    async def in_a_loop():
        events()
        await asyncio.sleep(0)
        events()
    asyncio.run(in_a_loop())
    sys.stdout.flush()
    sys.stderr.buffer.write(reference_out.getvalue())
"""


def test_own_events_are_byte_for_byte_the_standard_chains_lines() -> None:
    result = _run(_SAME_AS_STANDARD_CHAIN)
    ours, reference = result.stdout, result.stderr
    assert ours.count(b"\n") == reference.count(b"\n") == 4 * 10
    # The clock moved between the two calls: compare with the timestamps set aside.
    assert _TIMESTAMP.sub(b"T", ours) == _TIMESTAMP.sub(b"T", reference)
    assert len(_TIMESTAMP.findall(ours)) == 4 * 10
    lines = [orjson.loads(line) for line in ours.splitlines()]
    keys = list(lines[0])
    # The context's variables come in the context's own (hash) order, as merge_contextvars
    # takes them; everything else has a fixed place.
    assert keys[:7] == ["method", "route", "path", "status", "duration_ms", "client", "event"]
    assert set(keys[7:9]) == {"request_id", "trace_id"}
    assert keys[9:] == ["level", "logger", "timestamp"]
    assert lines[2]["opaque"] == "opaque value" and lines[3]["level"] == "warning"
    assert "Traceback" in lines[7]["exception"] and "ValueError: broken" in lines[7]["exception"]
    assert lines[7]["level"] == "error" and "exc_info" not in lines[7]
    assert 'File "<string>"' in lines[5]["stack"] and "stack_info" not in lines[5]
    assert "stack" not in lines[6] and "exception" not in lines[6]
    in_span = lines[10]
    assert (in_span["trace_id"], in_span["span_id"]) == (f"{0xABC:032x}", f"{0x12:016x}")


_MANY_IN_ONE_STEP = """
    import asyncio, logging, structlog
    from app.observability.logging import configure_logging

    configure_logging("INFO", "json")
    log = structlog.get_logger("app.access")
    stdlib = logging.getLogger("uvicorn.error")

    async def task(n):
        for i in range(200):
            log.info("request", task=n, i=i, pad="x" * (i * 37 % 900))
            if i % 50 == 0:
                stdlib.info("stdlib %d %d", n, i)
                log.info("after stdlib", task=n, i=i)
            if i == 100:
                log.info("long", task=n, blob="y" * 9000)
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(task(n) for n in range(10)))
        log.info("last line", task=-1, i=0)  # written in the loop's last step

    asyncio.run(main())
"""


def test_lines_of_busy_loop_steps_arrive_whole_and_in_order() -> None:
    out = _run(_MANY_IN_ONE_STEP).stdout
    records = [orjson.loads(line) for line in out.splitlines()]  # every line whole JSON
    ours = [record for record in records if record["logger"] == "app.access"]
    assert len(ours) == 10 * (200 + 4 + 1) + 1
    assert records[-1]["event"] == "last line"
    for n in range(10):
        mine = [r["i"] for r in ours if r["task"] == n and r["event"] == "request"]
        assert mine == list(range(200))
    # A standard-library line never overtakes a line of ours logged before it.
    events = [(r.get("task"), r.get("i"), r["event"]) for r in records]
    for n in range(10):
        for i in (0, 50, 100, 150):
            stdlib = next(k for k, r in enumerate(records) if r["event"] == f"stdlib {n} {i}")
            assert events.index((n, i, "request")) < stdlib < events.index((n, i, "after stdlib"))


_FORK_AND_EXIT = """
    import asyncio, os, sys, structlog
    from app.observability.logging import configure_logging

    configure_logging("INFO", "json")
    log = structlog.get_logger("app")

    async def main():
        log.info("before fork")  # pending until the end of this loop step
        pid = os.fork()
        if pid == 0:
            log.info("child", pid=os.getpid())
            sys.exit(0)  # an ordinary exit: the child's pending line goes out
        os.waitpid(pid, 0)
        log.info("parent after fork")
        raise SystemExit(0)  # leaves asyncio.run at once, with a line pending

    asyncio.run(main())
"""


def test_no_line_is_lost_or_doubled_across_fork_and_exit() -> None:
    out = _run(_FORK_AND_EXIT).stdout
    events = [orjson.loads(line)["event"] for line in out.splitlines()]
    assert sorted(events) == ["before fork", "child", "parent after fork"]
    assert events[0] == "before fork"


class _Recording:
    """Records each write of a stream: what a pipe's reader would get, call by call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def test_a_steps_lines_are_joined_into_pipe_atomic_writes_of_whole_lines() -> None:
    out = _Recording()
    pending = _PendingLines(out)  # type: ignore[arg-type]
    lines = [b"a" * size + b"\n" for size in (100, 3000, 900, 95, 5000, 10, 4095, 1, 2)]

    async def one_step() -> None:
        for line in lines:
            pending.write(line)
        assert out.writes == []  # nothing until the step ends
        await asyncio.sleep(0)

    asyncio.run(one_step())
    assert b"".join(out.writes) == b"".join(lines)
    # At most PIPE_BUF bytes per write (another process's write cannot split them), unless
    # one line alone is longer; never part of a line.
    assert all(write.endswith(b"\n") for write in out.writes)
    assert all(len(write) <= 4096 or write.count(b"\n") == 1 for write in out.writes)
    assert [len(write) for write in out.writes] == [4003, 96, 5001, 11, 4096, 5]
    pending.write(b"no loop\n")  # outside a loop: at once
    assert out.writes[-1] == b"no loop\n"


# The access line's own call against the bound logger's call it replaces, line by line, for
# every format and level: written in turn to the same stdout, with the same context, inside a
# span and outside, in a loop (lines batched per step) and outside one.
_ACCESS_LINE_AS_BOUND_LOGGER = """
    import asyncio, sys
    import structlog
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from app.observability.logging import access_line, configure_logging

    configure_logging(sys.argv[1], sys.argv[2])
    fast = access_line("app.access")
    bound = structlog.get_logger("app.access").bind()

    class Opaque:
        def __str__(self):
            return "opaque client"

    CALLS = [
        ("GET", "/api/v1/users/{user_id}", "/api/v1/users/7", 200, 0.47, "127.0.0.1"),
        ("POST", "none", "/x?\\u00e9\\"\\n", 404, 1.0, None),
        ("PATCH", "/api/v1/users/{user_id}", "/api/v1/users/8", 500, 12345.68, Opaque()),
    ]

    def both():
        # The middleware hands over its own span's ids; the line must not change for it.
        current = trace.get_current_span().get_span_context()
        ids = (f"{current.trace_id:032x}", f"{current.span_id:016x}") if current.is_valid else None
        for method, route, path, status, duration_ms, client in CALLS:
            fast(method, route, path, status, duration_ms, client, ids)
            bound.info("request", method=method, route=route, path=path, status=status,
                       duration_ms=duration_ms, client=client)

    structlog.contextvars.bind_contextvars(request_id="r-1", trace_id="caller-trace")
    both()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="r-2")
    span = NonRecordingSpan(SpanContext(
        trace_id=0xABC, span_id=0x12, is_remote=False, trace_flags=TraceFlags(1)))
    with trace.use_span(span):
        both()
    async def in_a_loop():
        both()
        await asyncio.sleep(0)
        both()
    asyncio.run(in_a_loop())
    structlog.get_logger("app").warning("written", level_was=sys.argv[1])
"""
# Both formats put the time first in a line (console) or under "timestamp" (JSON).
_ANY_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z")


def _access_lines(level: str, log_format: str) -> list[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTEL_SDK_DISABLED": "true"}
    script = textwrap.dedent(_ACCESS_LINE_AS_BOUND_LOGGER)
    result = subprocess.run(
        [sys.executable, "-c", script, level, log_format],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    # asyncio's own debug line about its selector is not ours.
    return [line for line in result.stdout.splitlines(True) if b"Using selector" not in line]


def test_the_access_line_is_byte_for_byte_the_bound_loggers_in_every_format_and_level() -> None:
    for log_format in ("json", "console"):
        for level in ("DEBUG", "INFO"):
            lines = _access_lines(level, log_format)
            assert len(lines) == 4 * 3 * 2 + 1, (level, log_format, lines)
            assert b"written" in lines[-1]
            pairs = list(zip(lines[0:-1:2], lines[1:-1:2], strict=True))
            for ours, reference in pairs:
                assert len(_ANY_TIMESTAMP.findall(ours)) == 1, ours
                assert _ANY_TIMESTAMP.sub(b"T", ours) == _ANY_TIMESTAMP.sub(b"T", reference)
            # The pairs differ from each other: every call and context reached the line.
            assert len({_ANY_TIMESTAMP.sub(b"T", ours) for ours, _ in pairs}) == 4 * 3 - 3
            assert b"r-1" in pairs[0][0] and b"r-2" in pairs[-1][0]
            if log_format == "json":
                first = orjson.loads(pairs[0][0])
                fields = ("method", "route", "path", "status", "duration_ms", "client")
                assert list(first)[:7] == [*fields, "event"]
                assert orjson.loads(pairs[2][0])["client"] == "opaque client"
                assert orjson.loads(pairs[3][0])["span_id"] == f"{0x12:016x}"


def test_the_access_line_is_not_written_below_the_configured_level() -> None:
    for log_format in ("json", "console"):
        for level in ("WARNING", "ERROR"):
            lines = _access_lines(level, log_format)
            # Nothing from either call; the process's other output still arrives.
            expected = 1 if level == "WARNING" else 0
            assert len(lines) == expected, (level, log_format, lines)
            assert all(b"written" in line for line in lines)


_ACCESS_LINE_UNDER_ANOTHER_CONFIGURATION = """
    import structlog
    from structlog.testing import capture_logs
    from app.observability.logging import access_line, configure_logging

    configure_logging("INFO", "json")
    before = access_line("app.access")  # as the middleware's: built before the capture
    with capture_logs() as captured:
        before("GET", "/r", "/p", 200, 0.5, None)
        access_line("app.access")("GET", "/r", "/p", 201, 0.5, None)
    assert captured == [{"method": "GET", "route": "/r", "path": "/p", "status": status,
                         "duration_ms": 0.5, "client": None, "event": "request",
                         "log_level": "info"} for status in (200, 201)], captured
    before("GET", "/r", "/p", 202, 0.5, None)  # the configuration is back: on stdout
"""


def test_the_access_line_follows_structlogs_configuration_changed_by_its_testing() -> None:
    lines = _run(_ACCESS_LINE_UNDER_ANOTHER_CONFIGURATION).stdout.splitlines()
    assert [orjson.loads(line)["status"] for line in lines] == [202]


# The middleware's lines of two requests that fail, one after the other in one context, at
# the level given: a standard-library warning, the unhandled error's line and the access line
# (info), each with its own request's id.
_MIDDLEWARE_AT_A_LEVEL = """
    import asyncio, logging, sys
    import structlog
    from app.observability.logging import configure_logging
    from app.observability.request_context import RequestContextMiddleware

    configure_logging(sys.argv[1], "json")

    async def failing(scope, receive, send):
        if scope["path"] == "/r/1":  # what the first request binds, the second must not see
            structlog.contextvars.bind_contextvars(user="first-user")
        logging.getLogger("app.stdlib").warning("inside")
        raise RuntimeError("boom")

    middleware = RequestContextMiddleware(failing, template=lambda scope: "/r/{n}")

    async def one(request_id, path):
        scope = {"type": "http", "method": "GET", "path": path, "client": ("10.0.0.9", 1),
                 "headers": [(b"x-request-id", request_id.encode())]}
        async def receive():
            return {"type": "http.request", "body": b""}
        async def send(message):
            pass
        await middleware(scope, receive, send)

    async def main():
        await one("first-request", "/r/1")
        await one("second-request", "/r/2")
    asyncio.run(main())
"""


def _middleware_lines(level: str) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTEL_SDK_DISABLED": "true"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_MIDDLEWARE_AT_A_LEVEL), level],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_the_middlewares_access_line_follows_the_level_and_the_requests_context() -> None:
    lines = _middleware_lines("INFO")
    assert [(r["event"], r["request_id"], r.get("user")) for r in lines] == [
        ("inside", "first-request", "first-user"),
        ("unhandled_error", "first-request", "first-user"),
        ("request", "first-request", "first-user"),
        ("inside", "second-request", None),
        ("unhandled_error", "second-request", None),
        ("request", "second-request", None),
    ]
    access = lines[-1]
    assert list(access) == [
        *("method", "route", "path", "status", "duration_ms", "client", "event"),
        *("request_id", "level", "logger", "timestamp"),
    ]
    assert (access["route"], access["status"], access["client"]) == ("/r/{n}", 500, "10.0.0.9")
    # At WARNING the access line is gone and the others stay.
    warning = _middleware_lines("WARNING")
    assert [r for r in lines if r["event"] != "request"] and [
        (r["event"], r["request_id"]) for r in warning
    ] == [(r["event"], r["request_id"]) for r in lines if r["event"] != "request"]


_PROXY_UNUSED = """
    import structlog
    from app.observability.logging import access_line, configure_logging

    configure_logging("INFO", "json")
    line = access_line("app.access")

    def refuse(*args, **kwargs):
        raise AssertionError("the access line went through the bound logger")

    structlog.BoundLoggerBase._proxy_to_logger = refuse
    line("GET", "/r", "/p", 200, 0.5, None)
"""


def test_the_access_line_skips_the_bound_loggers_path_under_the_services_configuration() -> None:
    """The line's bytes are the same either way; this pins that it costs what it should."""
    out = _run(_PROXY_UNUSED).stdout
    assert orjson.loads(out)["event"] == "request"


def test_logging_alone_loads_no_tracing_sdk() -> None:
    """A process that logs without tracing (the command line's tools) does not pay the
    tracing SDK's import: reading the current span for a line needs only the API."""
    result = _run(
        """
        import sys
        import app.observability.logging
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
        """
    )
    assert result.stdout.strip() == b"[]"
