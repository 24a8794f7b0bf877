"""Structured logs: one JSON object per line on stdout, joined to traces and requests."""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import datetime
import logging
import logging.config
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any, NamedTuple

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from app.observability.current_span import current_span

_configured_for: tuple[str, str] | None = None
_last_config: dict[str, Any] = {}

# A write of at most PIPE_BUF bytes to a pipe is never split by another process's write
# (POSIX): lines joined into one write stay within it, so the two workers sharing a
# container's stdout never interleave inside a line.
_ATOMIC_WRITE = 4096
_CONTEXTVAR_PREFIX = "structlog_"  # how structlog.contextvars names its variables
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}  # as add_log_level maps them


class UtcTimestamp:
    """TimeStamper(fmt="iso", utc=True)'s string, built from a per-second prefix: datetime's
    isoformat() with a time zone costs several microseconds per line."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads never see half an update

    def __call__(self, ns: int | None = None) -> str:
        second, rest = divmod(time.time_ns() if ns is None else ns, 1_000_000_000)
        cached, prefix = self._second
        if cached != second:
            start = datetime.datetime.fromtimestamp(second, tz=datetime.UTC)
            prefix = start.isoformat().removesuffix("+00:00")
            self._second = (second, prefix)
        micros = rest // 1000  # datetime.now() floors nanoseconds the same way
        # isoformat() leaves out a zero fraction, and so must we. (%-formatting: an f-string's
        # format spec goes through the general number formatter, twice the cost.)
        return "%s.%06dZ" % (prefix, micros) if micros else prefix + "Z"  # noqa: UP031


utc_timestamp = UtcTimestamp()


def add_timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    event_dict["timestamp"] = utc_timestamp()
    return event_dict


def add_trace_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """trace_id and span_id in the hex form every tracing backend shows."""
    context = current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = f"{context.trace_id:032x}"
        event_dict["span_id"] = f"{context.span_id:016x}"
    return event_dict


class _BoundContext:
    """merge_contextvars with the names of the context's variables remembered: the context
    holds a dozen foreign variables (OpenTelemetry's, anyio's, ...), and checking each name
    on every line cost more than the rest of the chain's bookkeeping."""

    def __init__(self) -> None:
        self._keys: dict[contextvars.ContextVar[Any], str] = {}

    def __call__(self, event_dict: EventDict) -> None:
        keys = self._keys
        for var, value in contextvars.copy_context().items():
            key = keys.get(var)
            if key is None:
                if len(keys) > 4096:  # variables made on the fly must not grow this forever
                    keys.clear()
                name = var.name
                key = keys[var] = (
                    name[len(_CONTEXTVAR_PREFIX) :] if name.startswith(_CONTEXTVAR_PREFIX) else ""
                )
            if key and value is not Ellipsis:
                event_dict.setdefault(key, value)


def _structlog_variable(key: str) -> contextvars.ContextVar[Any]:
    """The variable structlog.contextvars keeps `key` in, found through its own calls."""
    token = structlog.contextvars.bind_contextvars(**{key: Ellipsis})[key]
    token.var.reset(token)
    return token.var


_REQUEST_ID = _structlog_variable("request_id")


def bind_request_id(request_id: str) -> None:
    """clear_contextvars() then bind_contextvars(request_id=request_id): every line of the
    request carries its id and nothing an earlier request bound. The id's variable is set
    directly: bind_contextvars' keywords, name building and lookup cost several times the
    set, and the clear finds an empty context under uvicorn (a fresh one per request)."""
    structlog.contextvars.clear_contextvars()
    _REQUEST_ID.set(request_id)


_render_stack = structlog.processors.StackInfoRenderer(additional_ignores=[__name__])


class OwnEventRenderer:
    """Our own events' whole JSON chain in one processor, to the byte what merge_contextvars,
    add_log_level, add_logger_name, TimeStamper(fmt="iso", utc=True, key="timestamp"),
    add_trace_context, StackInfoRenderer, format_exc_info and orjson write one after another:
    the same keys in the same order. The stack and exception renderers only act on events
    that carry stack_info or exc_info, so only those events go through them."""

    def __init__(self) -> None:
        self._merge = _BoundContext()

    def access(
        self, logger: WrappedLogger, event_dict: EventDict, trace_ids: tuple[str, str]
    ) -> bytes:
        """An info event logged while the span of `trace_ids` (its trace and span id in hex,
        as add_trace_context writes them) is current: the caller has them already, and
        reading the current span back costs more than the rest of the line's keys."""
        self._merge(event_dict)
        event_dict["level"] = "info"
        event_dict["logger"] = logger.name
        event_dict["timestamp"] = utc_timestamp()
        event_dict["trace_id"], event_dict["span_id"] = trace_ids
        return orjson.dumps(event_dict, default=str, option=orjson.OPT_APPEND_NEWLINE)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> bytes:
        self._merge(event_dict)
        event_dict["level"] = _LEVEL_NAMES.get(method, method)
        record = event_dict.get("_record")
        event_dict["logger"] = logger.name if record is None else record.name
        event_dict["timestamp"] = utc_timestamp()
        add_trace_context(logger, method, event_dict)
        if "stack_info" in event_dict or "exc_info" in event_dict:
            event_dict = _render_stack(logger, method, event_dict)
            event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
        return orjson.dumps(event_dict, default=str, option=orjson.OPT_APPEND_NEWLINE)


def _render_json(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    """For the standard library's records (gunicorn, uvicorn, SQLAlchemy): text lines."""
    return orjson.dumps(event_dict, default=str).decode()


class _PendingLines:
    """The finished lines of one stream, written once per event-loop step.

    A write() and its flush per line was a system call per request; the lines a loop logs in
    one step are joined (in chunks of at most _ATOMIC_WRITE bytes) and written by a
    `call_soon` callback, which runs before the loop polls again, as app/http_protocol.py does
    for responses. Without a running loop a line goes out at once. Each loop's lines are its
    own thread's alone; a fork and the process's exit write what every loop left pending,
    and the standard library's handler what the current loop did, so no line is lost or
    overtaken."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._by_loop: dict[asyncio.AbstractEventLoop, list[bytes]] = {}

    def write(self, line: bytes) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write((line,))
            return
        lines = self._by_loop.get(loop)
        if lines is None:
            self._by_loop[loop] = [line]
            loop.call_soon(self.flush_loop, loop)
        else:
            lines.append(line)

    def flush_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        lines = self._by_loop.pop(loop, None)
        if lines is None:
            return
        if len(lines) == 1:  # a quiet step's one line: the common case, kept short
            self._out.write(lines[0])
            self._out.flush()
        else:
            self._write(lines)

    def flush_current(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.flush_loop(loop)

    def flush_all(self) -> None:
        for loop in list(self._by_loop):
            self.flush_loop(loop)

    def _write(self, lines: list[bytes] | tuple[bytes]) -> None:
        out = self._out
        if len(lines) > 1:
            chunk: list[bytes] = []
            size = 0
            for line in lines:
                if size and size + len(line) > _ATOMIC_WRITE:
                    out.write(b"".join(chunk))
                    out.flush()
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            lines = chunk
        out.write(lines[0] if len(lines) == 1 else b"".join(lines))
        out.flush()


_streams: dict[int, _PendingLines] = {}


def _pending_lines(out: IO[bytes]) -> _PendingLines:
    pending = _streams.get(id(out))
    if pending is None or pending._out is not out:
        pending = _streams[id(out)] = _PendingLines(out)
    return pending


def flush_pending_lines() -> None:
    """Write what every loop left pending (before a fork, at exit)."""
    for pending in list(_streams.values()):
        pending.flush_all()


def _flush_current_loop() -> None:
    for pending in list(_streams.values()):
        pending.flush_current()


def _forget_after_fork() -> None:
    """In a forked child the parent's loops are gone (their lines were written before)."""
    for pending in _streams.values():
        pending._by_loop.clear()


atexit.register(flush_pending_lines)
os.register_at_fork(before=flush_pending_lines, after_in_child=_forget_after_fork)


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The standard library's records on stdout, after the lines our events left pending,
    so the stream keeps the order in which things were logged."""

    def emit(self, record: logging.LogRecord) -> None:
        if _streams:
            _flush_current_loop()
        super().emit(record)


class LineLogger:
    """Hands a rendered line to stdout: our own events (the access log above all) skip the
    standard library's record, handler and formatter chain.

    `name` is what add_logger_name reports, as a standard-library logger's name would be.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        stream = sys.stdout
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()  # anything the text layer holds goes out before our bytes
        self._lines = _pending_lines(buffer) if buffer is not None else None
        self._text = stream

    def msg(self, line: bytes | str) -> None:
        if isinstance(line, bytes) and self._lines is not None:
            self._lines.write(line)
            return
        _flush_current_loop()
        text = line.decode() if isinstance(line, bytes) else line + "\n"
        self._text.write(text)
        self._text.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg


def _line_logger(*args: Any) -> LineLogger:
    return LineLogger(str(args[0]) if args else "app")


AccessLine = Callable[[str, str, str, int, float, str | None, tuple[str, str] | None], None]
"""Writes one request's access line: method, route, path, status, duration_ms, client, and
the trace and span id of the request's span in hex when the caller has it current (else
None)."""
_ACCESS_FIELDS = ("method", "route", "path", "status", "duration_ms", "client")


def access_line(name: str) -> AccessLine:
    """The access line as `structlog.get_logger(name).info("request", method=..., route=...,
    path=..., status=..., duration_ms=..., client=...)` writes it, through the configuration
    in force now (as a bound logger, it does not follow a later one).

    With our JSON configuration the event goes straight to its processor and stream: the
    bound logger's generic path (its level method, argument interpolation, context copy,
    result dispatch and the line logger's method) cost about 1.5 us a line, half as much as
    rendering it. Its level filter decides as the bound logger does; anything else goes
    through structlog."""
    bound = structlog.get_logger(name).bind()

    def through_structlog(*fields: Any) -> None:
        # The six named fields; structlog's add_trace_context reads the ids from the span.
        bound.info("request", **dict(zip(_ACCESS_FIELDS, fields, strict=False)))

    config = structlog.get_config()
    own = _own_json
    if (
        own is None
        or config["processors"] is not own.processors
        or config["wrapper_class"] is not own.wrapper_class
        or config["logger_factory"] is not _line_logger
    ):
        return through_structlog
    if not bound.is_enabled_for(logging.INFO):
        return _no_line
    logger = _line_logger(name)
    lines = logger._lines
    if lines is None:  # a stdout without bytes: the line logger's text path
        return through_structlog
    render = own.renderer
    chain = own.processors  # the bound logger's list, which structlog's testing edits in place
    write = lines.write

    def own_line(
        method: str,
        route: str,
        path: str,
        status: int,
        duration_ms: float,
        client: str | None,
        trace_ids: tuple[str, str] | None = None,
    ) -> None:
        if len(chain) != 1 or chain[0] is not render:
            through_structlog(method, route, path, status, duration_ms, client)
            return
        event_dict = {
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": client,
            "event": "request",
        }
        if trace_ids is None:
            write(render(logger, "info", event_dict))
        else:
            write(render.access(logger, event_dict, trace_ids))

    return own_line


def _no_line(*_fields: Any) -> None:
    """Below the configured level: as structlog's filtering logger, nothing is built."""


class _OwnJson(NamedTuple):
    """What configure_logging handed structlog for JSON lines, to recognise it later."""

    processors: list[Processor]
    wrapper_class: type[Any]
    renderer: OwnEventRenderer


_own_json: _OwnJson | None = None


def _use_console(log_format: str) -> bool:
    if log_format == "auto":
        return sys.stdout.isatty()
    return log_format == "console"


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """Our events go straight from structlog to stdout as JSON lines; the standard library's
    (gunicorn, uvicorn, SQLAlchemy) go through a formatter that writes the same shape.
    Idempotent: gunicorn's master and each worker may call it."""
    global _configured_for
    if _configured_for == (level, log_format):
        return
    _configured_for = (level, log_format)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        add_timestamp,
        add_trace_context,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    processors: list[Processor]
    # Calls below the level cost one no-op method call: nothing is built for them.
    wrapper_class = structlog.make_filtering_bound_logger(logging.getLevelName(level))
    global _own_json
    if _use_console(log_format):
        renderer = structlog.dev.ConsoleRenderer()
        processors = [*shared, renderer]
        _own_json = None
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = _render_json
        own = OwnEventRenderer()
        processors = [own]
        _own_json = _OwnJson(processors, wrapper_class, own)

    structlog.configure(
        processors=processors,
        logger_factory=_line_logger,
        wrapper_class=wrapper_class,
        cache_logger_on_first_use=True,
    )
    global _last_config
    _last_config = _dict_config(level, renderer, shared)
    logging.config.dictConfig(_last_config)


def _dict_config(level: str, renderer: Processor, shared: list[Processor]) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    renderer,
                ],
                "foreign_pre_chain": shared,
            }
        },
        "handlers": {
            "stdout": {
                "class": "app.observability.logging.StdoutHandler",
                "stream": "ext://sys.stdout",
                "formatter": "structured",
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # Our middleware writes the one access-log line per request.
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            "gunicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            "uvicorn.error": {"handlers": ["stdout"], "propagate": False, "level": level},
            "gunicorn.error": {"handlers": ["stdout"], "propagate": False, "level": level},
            "sqlalchemy": {"level": "WARNING"},
            # SQLAlchemy names pool loggers after the pool class's module.
            "app.observability.pool_metrics": {"level": "WARNING"},
            "alembic": {"level": "WARNING"},
        },
    }


def gunicorn_logconfig(level: str, log_format: str) -> dict[str, Any]:
    """The dictConfig gunicorn applies in its master; workers inherit it through fork."""
    configure_logging(level, log_format)
    return _last_config
