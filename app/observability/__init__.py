"""Logging (structlog), tracing (OpenTelemetry) and metrics (Prometheus) of the service."""
