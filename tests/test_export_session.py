"""How the span exporter sends. Where requests would make no difference it sends through
urllib3; everywhere else (a proxy that applies, a TLS endpoint, a credential provider) through
a requests session that reads the environment's proxy and CA-bundle settings once and answers
as requests' own session does. Exports go to real receivers, so the route each takes is seen,
not assumed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from app.observability import tracing
from app.observability.export_session import EnvironmentReadOnceSession, export_session
from app.observability.export_transport import direct_transport, traces_endpoint
from app.observability.otlp_export import EncodingSpanExporter
from tests.support.otlp import OtlpReceiver, otlp_receiver

ENDPOINT = "http://collector.example:4318/v1/traces"
PROXY = "http://proxy.example:3128"
_SETTINGS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.parametrize(
    ("environment", "session_verify", "url"),
    [
        ({}, True, ENDPOINT),
        ({"HTTP_PROXY": PROXY}, True, ENDPOINT),
        ({"https_proxy": PROXY}, True, ENDPOINT.replace("http", "https")),
        ({"ALL_PROXY": "socks5://proxy.example:1080"}, True, ENDPOINT),
        ({"HTTP_PROXY": PROXY, "NO_PROXY": "collector.example"}, True, ENDPOINT),
        ({"HTTP_PROXY": PROXY, "no_proxy": ".example"}, True, ENDPOINT),
        ({"REQUESTS_CA_BUNDLE": "/etc/ssl/collector.pem"}, True, ENDPOINT),
        ({"CURL_CA_BUNDLE": "/etc/ssl/curl.pem"}, "/etc/otel/ca.pem", ENDPOINT),
        ({}, False, ENDPOINT),
    ],
)
def test_the_settings_are_the_ones_requests_works_out(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], session_verify: object, url: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    plain, once = requests.Session(), EnvironmentReadOnceSession()
    for session in (plain, once):
        session.verify = session_verify  # type: ignore[assignment]
    for _ in range(2):  # the first answer worked out, the second one kept
        for options in ((None, None, None), (True, "/etc/ca.pem", ("cert.pem", "key.pem"))):
            assert once.merge_environment_settings(url, {}, *options) == (
                plain.merge_environment_settings(url, {}, *options)
            )
    # A request's own proxies are merged with the environment's, as requests merges them.
    own = {"http": "http://own.example:8080"}
    assert once.merge_environment_settings(url, dict(own), None, None, None) == (
        plain.merge_environment_settings(url, dict(own), None, None, None)
    )


def test_a_session_setting_changed_after_the_first_request_is_used() -> None:
    once = EnvironmentReadOnceSession()
    assert once.merge_environment_settings(ENDPOINT, {}, None, None, None)["verify"] is True
    once.verify = "/etc/otel/ca.pem"
    assert once.merge_environment_settings(ENDPOINT, {}, None, None, None)["verify"] == (
        "/etc/otel/ca.pem"
    )


def test_each_request_gets_its_own_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    once = EnvironmentReadOnceSession()
    first = once.merge_environment_settings(ENDPOINT, {}, None, None, None)
    first["proxies"]["http"] = "http://changed.example:1"
    second = once.merge_environment_settings(ENDPOINT, {}, None, None, None)
    assert second["proxies"]["http"] == PROXY


@pytest.fixture
def collector() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture
def proxy() -> Iterator[OtlpReceiver]:
    """An HTTP proxy that keeps what it is sent: a request that went through it lands here."""
    with otlp_receiver() as receiver:
        yield receiver


def _export_one(provider: TracerProvider, name: str) -> None:
    provider.get_tracer("test").start_span(name).end()


def _names(receiver: OtlpReceiver) -> set[str]:
    deadline = time.monotonic() + 10
    while not receiver.snapshot() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {span.name for span in receiver.snapshot()}


def _provider(
    monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver
) -> tuple[TracerProvider, object]:
    """A provider exporting through the service's exporter to `collector`, and the
    exporter's transport."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    exporter = tracing._otlp_exporter()
    assert isinstance(exporter, EncodingSpanExporter)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter._client._transport


def test_a_plain_http_collector_without_a_proxy_gets_urllib3s_post(
    monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver
) -> None:
    provider, transport = _provider(monkeypatch, collector)
    assert isinstance(transport, Urllib3HTTPTransport)
    _export_one(provider, "straight")
    assert _names(collector) == {"straight"}
    provider.shutdown()


def test_the_service_exports_through_the_environments_proxy_as_it_was_at_the_start(
    monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver, proxy: OtlpReceiver
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
    provider, transport = _provider(monkeypatch, collector)
    assert isinstance(transport, RequestsHTTPTransport)
    _export_one(provider, "through the proxy")
    assert _names(proxy) == {"through the proxy"}
    # Read once: a variable changed while the service runs does not reroute its exports.
    monkeypatch.delenv("HTTP_PROXY")
    _export_one(provider, "still through the proxy")
    names = {span.name for span in proxy.snapshot()}
    assert names == {"through the proxy", "still through the proxy"}
    assert collector.snapshot() == []
    provider.shutdown()


@pytest.mark.parametrize("no_proxy", ["NO_PROXY", "no_proxy"])
def test_no_proxy_sends_the_export_straight_to_the_collector_through_urllib3(
    monkeypatch: pytest.MonkeyPatch, collector: OtlpReceiver, proxy: OtlpReceiver, no_proxy: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
    monkeypatch.setenv(no_proxy, "127.0.0.1")
    provider, transport = _provider(monkeypatch, collector)
    assert isinstance(transport, Urllib3HTTPTransport)
    _export_one(provider, "straight")
    assert _names(collector) == {"straight"}
    assert proxy.snapshot() == []
    provider.shutdown()


def test_a_credential_providers_session_is_left_to_the_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(export_session(), EnvironmentReadOnceSession)
    for name in _SETTINGS[-2:]:
        monkeypatch.setenv(name, "a-provider")
        assert export_session() is None
        monkeypatch.delenv(name)


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


def test_a_netrc_login_for_the_collector_keeps_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """requests logs in with the .netrc entry of the endpoint's host; urllib3 would not."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine collector.example login otel password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert direct_transport(ENDPOINT) is None
    assert isinstance(
        direct_transport(ENDPOINT.replace("collector", "other")), Urllib3HTTPTransport
    )


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
