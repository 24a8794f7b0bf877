"""Dashboards and alerts: build freshness, promtool, and the proof against a real Prometheus."""
