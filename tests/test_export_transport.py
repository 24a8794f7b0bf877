"""The span exporter sends through urllib3 where requests would make no difference, and
through requests everywhere else: a proxy that applies, a TLS endpoint, a credential
provider. Exports go to real receivers, so the route each takes is seen, not assumed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from app.observability import tracing
from app.observability.export_transport import direct_transport, traces_endpoint
from app.observability.otlp_export import EncodingSpanExporter
from tests.support.otlp import OtlpReceiver, otlp_receiver

_SETTINGS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)
ENDPOINT = "http://collector.example:4318/v1/traces"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def collector() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture
def proxy() -> Iterator[OtlpReceiver]:
    """An HTTP proxy that keeps what it is sent: a request that went through it lands here."""
    with otlp_receiver() as receiver:
        yield receiver


def _transport(exporter: EncodingSpanExporter) -> object:
    return exporter._client._transport


def _export(monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver, name: str) -> object:
    """One span exported by the service's exporter to `collector`; its transport."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    exporter = tracing._otlp_exporter()
    assert isinstance(exporter, EncodingSpanExporter)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("test").start_span(name).end()
    transport = _transport(exporter)
    provider.shutdown()
    return transport


def _names(receiver: OtlpReceiver) -> set[str]:
    deadline = time.monotonic() + 10
    while not receiver.snapshot() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {span.name for span in receiver.snapshot()}


def test_a_plain_http_collector_without_a_proxy_gets_urllib3s_post(
    monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver
) -> None:
    transport = _export(monkeypatch, collector, "straight")
    assert isinstance(transport, Urllib3HTTPTransport)
    assert _names(collector) == {"straight"}


def test_a_proxy_for_the_endpoint_keeps_requests_and_is_used(
    monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver, proxy: OtlpReceiver
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
    transport = _export(monkeypatch, collector, "through the proxy")
    assert isinstance(transport, RequestsHTTPTransport)
    assert _names(proxy) == {"through the proxy"}
    assert collector.snapshot() == []


def test_no_proxy_for_the_endpoint_sends_through_urllib3(
    monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver, proxy: OtlpReceiver
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    transport = _export(monkeypatch, collector, "straight past the proxy")
    assert isinstance(transport, Urllib3HTTPTransport)
    assert _names(collector) == {"straight past the proxy"}
    assert proxy.snapshot() == []


@pytest.mark.parametrize(
    ("environment", "endpoint"),
    [
        ({}, ENDPOINT.replace("http:", "https:")),
        ({"ALL_PROXY": "socks5://proxy.example:1080"}, ENDPOINT),
        ({"http_proxy": "http://proxy.example:3128"}, ENDPOINT),
        ({"HTTP_PROXY": "http://proxy.example:3128", "NO_PROXY": "other.example"}, ENDPOINT),
        ({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "a-provider"}, ENDPOINT),
        ({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "a-provider"}, ENDPOINT),
    ],
)
def test_requests_sends_wherever_it_would_send_differently(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], endpoint: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert direct_transport(endpoint) is None


def test_the_https_proxy_does_not_concern_a_plain_http_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert isinstance(direct_transport(ENDPOINT), Urllib3HTTPTransport)


def test_the_endpoint_is_the_exporters_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318/")
    assert traces_endpoint() == ENDPOINT
    exporter = EncodingSpanExporter()
    assert exporter._endpoint == traces_endpoint()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces.example/v1/t")
    assert traces_endpoint() == "http://traces.example/v1/t" == EncodingSpanExporter()._endpoint
