"""The ASGI scope of a plain GET request, for tests that start a request's server span."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


def http_scope(*headers: tuple[bytes, bytes]) -> MutableMapping[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/users/1",
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"t"), *headers],
    }
