"""Label matchers shared by every dashboard query: one place decides how series are selected.

The dashboards never hard-code the job name: the `job` variable lists the jobs that export
`user_service_build_info`, a metric only this service has. That works whatever the
ServiceMonitor calls the job (the chart's relabels it to `user-service`) and in a plain
scrape config (`user-service`). `namespace` and `pod` come from the ServiceMonitor's target
labels; a plain Prometheus must add them as static labels (tests/dashboards does).
"""

from __future__ import annotations

from typing import Final

# Raw series of this service, narrowed by the dashboard variables.
SERIES: Final = 'job=~"$job", namespace=~"$namespace", pod=~"$pod"'
# Raw HTTP series also follow the route picker.
HTTP: Final = f'{SERIES}, handler=~"$handler"'
# Recording rules aggregate pods away (they keep namespace and job only).
RECORDED: Final = 'job=~"$job", namespace=~"$namespace"'
# Scrape health: `up` carries the same target labels.
TARGETS: Final = 'job=~"$job", namespace=~"$namespace", pod=~"$pod"'

# Every rate uses Grafana's $__rate_interval (at least four scrape intervals), so a panel
# never shows gaps when the scrape interval changes.
RATE: Final = "$__rate_interval"

# The latency objective's threshold: a bucket bound of http_request_duration_seconds.
LATENCY_SLO_LE: Final = "0.25"


def rate(metric: str, matchers: str = SERIES, window: str = RATE) -> str:
    """`rate(metric{matchers}[window])`."""
    return f"rate({metric}{{{matchers}}}[{window}])"


def series(metric: str, extra: str = "") -> str:
    """`metric{SERIES extra}`: the raw series; `extra` adds matchers (`, label="value"`)."""
    return f"{metric}{{{SERIES}{extra}}}"


def sum_by(by: str, metric: str) -> str:
    """A gauge summed per `by` (per pod: over that pod's workers)."""
    return f"sum by ({by}) ({series(metric)})"


def rate_by(metric: str, by: str, extra: str = "") -> str:
    """A counter's per-second rate summed per `by`."""
    return f"sum by ({by}) ({rate(metric, SERIES + extra)})"


def quantile(q: float, bucket: str, by: str = "le", matchers: str = SERIES) -> str:
    """Quantile `q` of a histogram's `_bucket` series; `by` keeps `le` and any other label."""
    return f"histogram_quantile({q}, sum by ({by}) ({rate(bucket, matchers)}))"


def objective(record: str) -> str:
    """The objective as a scalar: max() tolerates a second copy of the record (two releases)."""
    return f"scalar(max({record}))"
