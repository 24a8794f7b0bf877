#!/usr/bin/env bash
# Runs a command inside .venv after installing the given lock (scripts/requirements/LOCK.txt; only
# when it or pyproject.toml changed since the last install), so `make loadtest` right after
# `make run` (which installs the runtime lock) finds Locust, `make dashboards` the Grafana SDK.
#
# Usage: scripts/venv-run.sh LOCK COMMAND [ARGS...]    e.g. scripts/venv-run.sh dev python -m loadtests.gate
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh
lock=$1
shift
ensure_venv "$lock"
exec "$@"
