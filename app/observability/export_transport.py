"""The span exporter's HTTP transport: urllib3 itself where requests would only add its cost.

An export of 512 spans cost the exporting thread 1.46 ms of CPU through the service's
requests session and 1.02 ms through urllib3 (`python -m scripts.bench.export_post`). That
thread holds the GIL the worker's event loop waits for, so the cost lands on the requests
that arrive meanwhile: in quiet runs at 70% of the peak each export left 7 or 8 requests
past four times the median latency through requests, 2 to 4 through urllib3. The official
exporter's own urllib3 transport sends the same POST, retried, timed and compressed by the
same client.

It is used only where requests would make no difference: a plain-HTTP endpoint (a TLS one
keeps requests, whose CA bundle comes from its own variables), no proxy variable that
requests would route the endpoint through (NO_PROXY included, as requests reads it), no
.netrc entry requests would log in with, and no credential provider (which hands the
exporter a requests session of its own).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.exporter.otlp.proto.http._common import _resolve_endpoint
from opentelemetry.sdk.environment_variables import (
    _OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER,
    _OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)
from requests.utils import get_environ_proxies, get_netrc_auth, select_proxy


def traces_endpoint() -> str:
    """Where the span exporter posts, worked out from the environment as it works it out."""
    return _resolve_endpoint(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "v1/traces")


def credential_provider() -> bool:
    """Whether a credential provider is configured: the exporter then loads its session."""
    return bool(
        os.environ.get(_OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER)
        or os.environ.get(_OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER)
    )


def direct_transport(endpoint: str) -> BaseHTTPTransport | None:
    """urllib3's transport for `endpoint`, or None where requests must send the export."""
    if credential_provider() or urlsplit(endpoint).scheme != "http":
        return None
    if select_proxy(endpoint, get_environ_proxies(endpoint)) is not None:
        return None
    if get_netrc_auth(endpoint) is not None:
        return None
    return Urllib3HTTPTransport()
