"""Grafana dashboards (built with grafana-foundation-sdk) and Prometheus rules for user-service."""
