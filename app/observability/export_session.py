"""The span exporter's HTTP session: the environment's proxy and CA-bundle settings read once.

For every request, requests looks up HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE and
CURL_CA_BUNDLE again, and the standard library's proxy lookup walks every variable of the
process environment twice to do it. A pod's environment holds some seven variables for each
Service of its namespace (Kubernetes' service links), so the walk grew with the namespace:
`python -m scripts.bench.export_post` prints what one export's POST costs either way. A
running service's environment does not change, so each request shape's answer is worked
out once, by requests itself, and kept.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import requests

from app.observability.export_transport import credential_provider

# More distinct request shapes than an exporter ever makes (it posts to one endpoint).
_SHAPES_KEPT = 64


class EnvironmentReadOnceSession(requests.Session):
    """A requests Session whose environment settings for a request are requests' own answer,
    worked out the first time that request's URL and options are seen."""

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[Hashable, dict[str, Any]] = {}

    def merge_environment_settings(
        self, url: str, proxies: dict[str, str] | None, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if proxies:  # the request's own proxies: merged with the environment's every time
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        # The session's own settings are part of the answer, and may be set after creation
        # (the exporter sets `verify` from its certificate options).
        key = (
            url,
            proxies is None,
            stream,
            verify,
            cert,
            self.trust_env,
            tuple(self.proxies.items()),
            self.stream,
            self.verify,
            self.cert,
        )
        try:
            settings = self._settings.get(key)
        except TypeError:  # an unhashable option: nothing to keep
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if settings is None:
            if len(self._settings) >= _SHAPES_KEPT:
                self._settings.clear()
            settings = super().merge_environment_settings(
                url, None if proxies is None else {}, stream, verify, cert
            )
            self._settings[key] = settings
        # requests hands the proxies on to the transport adapter: each request its own copy.
        return {**settings, "proxies": dict(settings["proxies"])}


def export_session() -> requests.Session | None:
    """The session for the OTLP/HTTP span exporter; None when a credential provider is
    configured, so that the exporter loads the provider's own session."""
    if credential_provider():
        return None
    return EnvironmentReadOnceSession()
