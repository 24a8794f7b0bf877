"""What one span export costs the exporting thread, with requests' own session, with the
service's (the environment's proxy settings read once) and with the urllib3 transport the
service sends through where no proxy applies; CPU microseconds per export.

usage: python -m scripts.bench.export_post [ROUNDS]

Each export is the service's exporter sending a batch of 512 spans of cached reads to a
local OTLP sink that drops them, each span's bytes written as it ended, as in the service.
It runs with this process's environment, then with the variables Kubernetes' service links
add for 60 Services in the pod's namespace (seven each). The two sessions alternate round
by round; the minimum and median of the rounds are printed (a shared machine only ever adds
time).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import requests
from opentelemetry.sdk.trace.export import SpanExportResult

from app.observability.export_session import EnvironmentReadOnceSession
from app.observability.export_transport import direct_transport
from app.observability.otlp_export import EncodingSpanExporter
from scripts.bench.span_encoding import cached_read_spans
from scripts.bench.stack import otlp_sink

SERVICES = 60
EXPORTS_PER_ROUND = 40


@contextmanager
def service_links(count: int) -> Iterator[None]:
    """The variables a pod gets for `count` Services in its namespace."""
    added: dict[str, str] = {}
    for number in range(count):
        name, address = f"SERVICE_{number}", f"10.96.{number // 250}.{number % 250 + 1}"
        added |= {
            f"{name}_SERVICE_HOST": address,
            f"{name}_SERVICE_PORT": "80",
            f"{name}_SERVICE_PORT_HTTP": "80",
            f"{name}_PORT": f"tcp://{address}:80",
            f"{name}_PORT_80_TCP": f"tcp://{address}:80",
            f"{name}_PORT_80_TCP_PROTO": "tcp",
            f"{name}_PORT_80_TCP_ADDR": address,
        }
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            del os.environ[key]


def _per_export(export: Callable[[], SpanExportResult]) -> float:
    started = time.thread_time()
    for _ in range(EXPORTS_PER_ROUND):
        if export() is not SpanExportResult.SUCCESS:
            raise SystemExit("an export to the local sink failed")
    return (time.thread_time() - started) / EXPORTS_PER_ROUND * 1e6


def main(argv: Sequence[str]) -> None:
    rounds = int(argv[0]) if argv else 10
    spans = cached_read_spans(written=True)
    with otlp_sink() as sink:
        endpoint = f"{sink}/v1/traces"
        for label, links in (("this environment", 0), (f"+{SERVICES} Services' links", SERVICES)):
            with service_links(links):
                variables = len(os.environ)
                exporters = {
                    name: EncodingSpanExporter(endpoint=endpoint, session=session)
                    for name, session in (
                        ("requests' session", requests.Session()),
                        ("read once", EnvironmentReadOnceSession()),
                    )
                }
                direct = direct_transport(endpoint)
                if direct is not None:  # no proxy variable routes the sink elsewhere
                    exporters["urllib3"] = EncodingSpanExporter(
                        endpoint=endpoint, _transport=direct
                    )
                times: dict[str, list[float]] = {name: [] for name in exporters}
                for _ in range(rounds):
                    for name, exporter in exporters.items():
                        times[name].append(_per_export(lambda e=exporter: e.export(spans)))
                for exporter in exporters.values():
                    exporter.shutdown()
            print(
                f"{label} ({variables} variables): CPU us per export of "
                f"{len(spans)} spans, {rounds} rounds"
            )
            for name, values in times.items():
                print(
                    f"  {name:18s} min {min(values):7.0f}  median {statistics.median(values):7.0f}"
                )
            plain = statistics.median(times["requests' session"])
            for name in list(times)[1:]:
                saved = plain - statistics.median(times[name])
                print(
                    f"  {name} saves per export (medians): {saved:.0f} us, "
                    f"{saved / len(spans):.2f} per span"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
