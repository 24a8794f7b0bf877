"""Writes the dashboards' JSON and copies the rule file into the Helm chart.

    python -m dashboards.build            write dashboards/*.json and the chart's copies
    python -m dashboards.build --check    exit 1 if any written file would change

The chart ships byte-identical copies (helm/user-service/files/...), so what Grafana and
Prometheus load in a cluster is exactly what the tests proved here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import auth, dependencies, overview

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
CHART_FILES = REPO / "helm" / "user-service" / "files"
CHART_DASHBOARDS = CHART_FILES / "dashboards"
RULES = ROOT / "alerts" / "user-service.rules.yaml"
CHART_RULES = CHART_FILES / "prometheus" / "user-service.rules.yaml"

# File stem -> dashboard factory. Stems stay short: the chart names a ConfigMap after each.
DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "overview": overview.build,
    "dependencies": dependencies.build,
    "auth": auth.build,
}


def render(factory: Callable[[], dashboard.Dashboard]) -> str:
    """Dashboard JSON with sorted keys and a final newline, so rebuilds diff cleanly."""
    model: Any = factory().build()
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def outputs() -> dict[Path, str]:
    """Every file the build owns, with the content it must have."""
    files: dict[Path, str] = {}
    for stem, factory in DASHBOARDS.items():
        text = render(factory)
        files[ROOT / f"{stem}.json"] = text
        files[CHART_DASHBOARDS / f"{stem}.json"] = text
    files[CHART_RULES] = RULES.read_text(encoding="utf-8")
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    return [
        p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text
    ]


def strays(files: dict[Path, str]) -> list[Path]:
    """JSON in the chart's dashboard folder that the build did not make (e.g. a placeholder):
    the chart turns every file there into a ConfigMap, so a stray one would ship."""
    return sorted(p for p in CHART_DASHBOARDS.glob("*.json") if p not in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail instead of writing")
    args = parser.parse_args(argv)
    files = outputs()
    changed = stale(files)
    extra = strays(files)
    if args.check:
        for path in changed:
            print(
                f"stale: {path.relative_to(REPO)} (run python -m dashboards.build)", file=sys.stderr
            )
        for path in extra:
            print(
                f"not built here: {path.relative_to(REPO)} (run python -m dashboards.build)",
                file=sys.stderr,
            )
        return 1 if changed or extra else 0
    for path in extra:
        path.unlink()
        print(f"removed {path.relative_to(REPO)}")
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
