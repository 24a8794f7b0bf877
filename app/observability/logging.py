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
    return orjson.dumps(event_dict, default=str).decode()


def _use_console(log_format: str) -> bool:
    if log_format == "auto":
        return sys.stdout.isatty()
    return log_format == "console"


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """Route structlog and the standard library (gunicorn, uvicorn, sqlalchemy) through one
    pipeline. Idempotent: gunicorn's master and each worker may call it."""
    global _configured_for
    if _configured_for == (level, log_format):
        return
    _configured_for = (level, log_format)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_trace_context,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if _use_console(log_format):
        renderer = structlog.dev.ConsoleRenderer()
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = _render_json

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
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
