#!/usr/bin/env bash
# Runs a command inside .venv after installing the project with the given extras (only when
# pyproject.toml changed since the last install), so `make loadtest` right after `make run`
# finds Locust, `make dashboards` finds the Grafana SDK, and so on.
#
# Usage: scripts/venv-run.sh EXTRAS COMMAND [ARGS...]    e.g. scripts/venv-run.sh loadtest python -m loadtests.gate
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh
extras=$1
shift
ensure_venv "$extras"
exec "$@"
