#!/usr/bin/env bash
# Throughput of the service against bare FastAPI baselines, measured with wrk in one run.
#
# Usage: scripts/bench.sh [seconds-per-run] [connections]     (defaults 10 and 32)
# Every server runs under gunicorn with 2 uvicorn workers on 127.0.0.1; the numbers are
# only meaningful as ratios within one run on the same machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh
ensure_venv dev
ensure_postgres
ensure_redis
command -v wrk >/dev/null || apt_install wrk

DURATION=${1:-10}
CONNECTIONS=${2:-32}
PORT_BASE=18100
exec python -m scripts.bench.run --duration "$DURATION" --connections "$CONNECTIONS" --port-base "$PORT_BASE"
