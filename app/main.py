"""create_app(): the FastAPI app with its middleware, routers, error handlers and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.sdk.trace import SpanProcessor
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.api import auth, health, introspection, sessions, users, wellknown
from app.api.body_limit import BodySizeLimitMiddleware
from app.api.compression import FastGZipMiddleware
from app.api.deps import RATE_LIMIT_DECISION
from app.api.draining import CloseWhileDrainingMiddleware
from app.api.flat_routes import include_flat
from app.api.openapi import install_docs
from app.api.service_app import ServiceApp
from app.api.trusted_host import TrustedHostMiddleware
from app.errors import PROBLEM_MEDIA_TYPE, DomainError, problem_body
from app.infra.database import DRIVER_ERRORS, classify_database_error, database_error_cause
from app.infra.rate_limit import RateLimitDecision
from app.infra.schema import shipped_migrations
from app.observability import metrics as service_metrics
from app.observability.http_metrics import HttpMetrics
from app.observability.logging import configure_logging
from app.observability.loop_lag import LoopLagProbe
from app.observability.metric_values import flush as flush_metrics
from app.observability.metrics_port import MetricsPortMiddleware
from app.observability.request_context import RequestContextMiddleware
from app.observability.tracing import (
    flush_tracing,
    instrument_clients,
    start_tracing,
    tracing_enabled,
)
from app.settings import Settings
from app.wiring import Resources

log = structlog.get_logger("app")

# The API's routers and their prefixes, in the order their routes are tried.
ROUTERS: tuple[tuple[APIRouter, str], ...] = (
    (health.router, ""),
    (sessions.router, "/api/v1"),
    (users.router, "/api/v1"),
    (auth.router, "/api/v1"),
    (introspection.router, "/api/v1"),
    (wellknown.router, ""),
)

_HTTP_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    415: "Unsupported media type",
}


def _problem(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body = problem_body(
        status=status,
        slug=slug,
        title=title,
        detail=detail,
        instance=request.url.path,
        request_id=request.scope.get("state", {}).get("request_id", ""),
        extra=extra,
    )
    # A limited route shows its budget on errors too: failures count against it.
    decision: RateLimitDecision | None = getattr(request.state, RATE_LIMIT_DECISION, None)
    if decision is not None:
        headers = {**decision.headers(), **(headers or {})}
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def _domain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, DomainError)
    return _problem(
        request, error.status, error.slug, error.title, error.detail, error.headers, error.extra
    )


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    fields = [
        {
            "field": ".".join(str(part) for part in item["loc"]),
            "message": item["msg"],
            "type": item["type"],
        }
        for item in error.errors()
    ]
    names = ", ".join(field["field"] for field in fields)
    return _problem(
        request,
        422,
        "validation-error",
        "Validation failed",
        f"Invalid fields: {names}",
        extra={"errors": fields},
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    slug = _HTTP_TITLES.get(error.status_code, "HTTP error").lower().replace(" ", "-")
    return _problem(
        request,
        error.status_code,
        slug,
        _HTTP_TITLES.get(error.status_code, "HTTP error"),
        str(error.detail),
        dict(error.headers or {}),
    )


async def _dependency_error(request: Request, error: Exception) -> Response:
    domain_error = classify_database_error(error)
    if domain_error is None:
        raise error
    log.warning(
        "database_error",
        error=type(error).__name__,
        cause=database_error_cause(error),
        status=domain_error.status,
    )
    return await _domain_error(request, domain_error)


def _lifespan(settings: Settings, span_processor: SpanProcessor | None) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Runs in each worker after gunicorn forks: providers, pools and sockets are
        # never shared between processes.
        provider = start_tracing(settings, span_processor)
        resources = Resources.open(settings)
        if provider is not None:
            instrument_clients(resources.engine, provider)
        app.state.resources = resources
        resources.start()
        app.state.migrations = shipped_migrations()
        service_metrics.BUILD_INFO.labels(version=__version__, git_commit=settings.git_commit).set(
            1
        )
        service_metrics.WORKER_PROCESSES.set(1)
        service_metrics.initialise_label_sets()
        loop_lag = LoopLagProbe(service_metrics.EVENT_LOOP_LAG.observe)
        loop_lag.start()
        await resources.passwords.warm_up()
        await _load_keys(resources)
        log.info("started", version=__version__, environment=settings.app_env.value)
        try:
            yield
        finally:
            loop_lag.stop()
            await resources.close()
            flush_tracing(provider)
            # The worker is about to die (uvicorn re-raises SIGTERM): its last samples now.
            flush_metrics()
            log.info("stopped")

    return lifespan


async def _load_keys(resources: Resources) -> None:
    """Load the signing keys before serving; an unreachable database must not stop the start
    (readiness reports it), the ring keeps retrying in the background."""
    service_metrics.SIGNING_KEY_ROTATION_PERIOD.set(
        resources.settings.signing_key_rotation_period_seconds
    )
    try:
        await resources.keys.refresh()
    except Exception as error:
        log.warning("signing_keys_not_loaded", error=type(error).__name__)
    resources.keys.start()


def create_app(
    settings: Settings | None = None, span_processor: SpanProcessor | None = None
) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    tracing = span_processor is not None or tracing_enabled()
    app = ServiceApp(
        # Server spans come from RequestContextMiddleware (it resolves the route once for
        # spans, metrics and the access log), metrics from Prometheus, logs from structlog:
        # FastAPI's own telemetry, on by default once a tracer provider exists, stays off.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        title="user-service",
        version=__version__,
        summary="Users and authentication.",
        lifespan=_lifespan(settings, span_processor),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    if settings.docs_enabled:
        install_docs(app, openapi_url="/openapi.json", docs_url="/docs")
    app.state.draining = False
    app.state.settings = settings

    # Flat, not nested: a request is matched once against full paths (see flat_routes).
    for router, prefix in ROUTERS:
        include_flat(app.router, router, prefix)

    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _dependency_error)
    app.add_exception_handler(OSError, _dependency_error)
    for driver_error in DRIVER_ERRORS:
        app.add_exception_handler(driver_error, _dependency_error)

    # Added innermost first: the last one added runs first on the way in.
    app.add_middleware(FastGZipMiddleware, minimum_size=1024)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-Trace-Id",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
        )
    if "*" not in settings.trusted_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestContextMiddleware,
        template=app.route_table.template,
        metrics=HttpMetrics() if settings.metrics_enabled else None,
        tracing=tracing,
    )
    app.add_middleware(CloseWhileDrainingMiddleware, state=app.state)
    if settings.metrics_enabled:
        # Outermost: a scrape on the metrics port touches nothing else.
        app.add_middleware(MetricsPortMiddleware, port=settings.metrics_port)
    return app
