#!/usr/bin/env bash
# The service against bare FastAPI baselines, in one run on this machine: throughput (wrk),
# CPU, database transactions and Redis commands per request, logins, PATCH, and latency at a
# constant offered rate (vegeta). Prints a table and the goal ratios; the rows the ratios
# compare run side by side in ten interleaved passes of 3 s (each after 1 s of unmeasured
# load), every other pass in reverse order, each pair of passes on servers started afresh,
# and each ratio is the median over pairs of passes (one in each order).
# The rows the instrumentation goals compare run once more with one worker under callgrind,
# which counts the instructions each request executes: the one figure the machine's other
# load does not move, printed beside those ratios. wrk and vegeta run under SCHED_BATCH.
#
# Usage: scripts/bench.sh [seconds-per-row] [connections]     (defaults 10 and 32; the
#                                     compared rows' passes take 3 s bursts)
#        PROFILE=1 scripts/bench.sh   also writes a flame graph of the cached read under load
#                                     to scripts/bench/flamegraphs/flamegraph-cached-read.svg (py-spy).
#        INSTRUCTIONS=N scripts/bench.sh   counts N requests per row under callgrind (default
#                                     1000; 0 skips the count).
# Every server runs under gunicorn with 2 uvicorn workers on 127.0.0.1 (one, on a core of its
# own, in the latency runs), with a redis-server and a database of the run's own; the numbers
# are only meaningful as ratios within one run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh
ensure_venv dev
ensure_postgres
command -v redis-server >/dev/null || apt_install redis-server
command -v wrk >/dev/null || apt_install wrk
command -v valgrind >/dev/null || apt_install valgrind
ensure_jemalloc

# Go builds vegeta and the fixed-cost server the latency runs compare the service with.
command -v go >/dev/null || apt_install golang-go
# vegeta, the constant-rate generator: built once from its pinned Go module, then cached.
VEGETA_VERSION=v12.13.0
VEGETA_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/user-service/vegeta-$VEGETA_VERSION
if [ ! -x "$VEGETA_DIR/vegeta" ]; then
  log "building vegeta $VEGETA_VERSION"
  GOBIN="$VEGETA_DIR" go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
fi
export VEGETA="$VEGETA_DIR/vegeta"

args=(--duration "${1:-10}" --connections "${2:-32}" --instructions "${INSTRUCTIONS:-1000}")
if [ "${PROFILE:-0}" = "1" ]; then
  args+=(--profile scripts/bench/flamegraphs/flamegraph-cached-read.svg)
fi
exec python -m scripts.bench.run "${args[@]}"
