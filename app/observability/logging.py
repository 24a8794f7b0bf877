"""Structured logs: one JSON object per line on stdout, joined to traces and requests."""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

_configured_for: tuple[str, str] | None = None
_last_config: dict[str, Any] = {}


def add_trace_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """trace_id and span_id in the hex form every tracing backend shows."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def _render_json(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    """For the standard library's records (gunicorn, uvicorn, SQLAlchemy): text lines."""
    return orjson.dumps(event_dict, default=str).decode()


def _render_json_line(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> bytes:
    """For our own events: the finished line as bytes, ready for one write."""
    return orjson.dumps(event_dict, default=str, option=orjson.OPT_APPEND_NEWLINE)


class LineLogger:
    """Writes a rendered line straight to stdout and flushes it: our own events (the access
    log above all) skip the standard library's record, handler and formatter chain.

    `name` is what add_logger_name reports, as a standard-library logger's name would be.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        stream = sys.stdout
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()  # anything the text layer holds goes out before our bytes
        self._bytes = buffer
        self._text = stream

    def msg(self, line: bytes | str) -> None:
        if isinstance(line, bytes) and self._bytes is not None:
            self._bytes.write(line)
            self._bytes.flush()
            return
        text = line.decode() if isinstance(line, bytes) else line + "\n"
        self._text.write(text)
        self._text.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg


def _line_logger(*args: Any) -> LineLogger:
    return LineLogger(str(args[0]) if args else "app")


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
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_trace_context,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    line_renderer: Processor
    if _use_console(log_format):
        renderer = line_renderer = structlog.dev.ConsoleRenderer()
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = _render_json
        line_renderer = _render_json_line

    structlog.configure(
        processors=[*shared, line_renderer],
        logger_factory=_line_logger,
        # Calls below the level cost one no-op method call: nothing is built for them.
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
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
                "class": "logging.StreamHandler",
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
