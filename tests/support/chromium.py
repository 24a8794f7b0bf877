"""Headless Chromium flags for a machine with no network but the service under test: no
background fetches, updates, sync or QUIC probing (each would be refused, many at a time)."""

from __future__ import annotations

OFFLINE_HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
