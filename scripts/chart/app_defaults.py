"""Writes helm/user-service/files/app-defaults.yaml: the app's own defaults, which the chart
uses for any config value left null (its checks count what the app will really do).

    python -m scripts.chart.app_defaults --write    # after changing a default in the app
    python -m scripts.chart.app_defaults --check    # exit 1 when the file is stale
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

from scripts.chart.generated_file import wants_write, write_or_check
from scripts.chart.helm import CHART_DIR, REPO_ROOT

OUTPUT = CHART_DIR / "files" / "app-defaults.yaml"
GUNICORN_CONF = REPO_ROOT / "gunicorn.conf.py"
HEADER = (
    "# GENERATED from app/settings.py and gunicorn.conf.py: python -m scripts.chart.app_defaults\n"
)
# Only what the chart computes with (connection budget, shutdown and probe timing), so a new
# setting elsewhere in the app does not make this file stale.
CHART_KEYS = (
    "DB_MAX_OVERFLOW",
    "DB_POOL_SIZE",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "READINESS_TIMEOUT",
    "SHUTDOWN_DRAIN_SECONDS",
    "WEB_CONCURRENCY",
)
_GUNICORN_INT = re.compile(r'_env_int\("(?P<name>[A-Z_]+)", (?P<default>\d+)\)')


def app_defaults() -> dict[str, Any]:
    """Env var name -> the default the service applies when the variable is unset."""
    from app.settings import Settings

    defaults: dict[str, Any] = {}
    for field in Settings.model_fields.values():
        if field.alias in CHART_KEYS:
            defaults[field.alias] = field.default
    # gunicorn's own knobs are read by gunicorn.conf.py, not by Settings.
    for match in _GUNICORN_INT.finditer(GUNICORN_CONF.read_text()):
        defaults[match["name"]] = int(match["default"])
    return {key: defaults[key] for key in CHART_KEYS}


def render() -> str:
    return HEADER + yaml.safe_dump(app_defaults(), sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    return write_or_check(
        OUTPUT,
        render(),
        write=wants_write(argv, __doc__),
        stale_message=f"{OUTPUT} is stale: python -m scripts.chart.app_defaults --write",
    )


if __name__ == "__main__":
    sys.exit(main())
