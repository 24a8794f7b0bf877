#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what it needs (Python packages, helm,
# promtool, buildah, the local Kubernetes cluster's binaries), starts PostgreSQL and Redis
# when they are down, then runs lint, type checks and pytest (unit, integration, deploy,
# cluster, dashboards, load-test smoke, faults, security).
#
# Usage: scripts/test.sh [pytest args...]      (`make test` runs it with none)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

# Says how the background build of the cluster's Go pieces ended; stops it if it is still
# running (the cluster tests did not get as far as waiting for it, or the set-up failed).
end_cluster_build() {
  if kill -0 "$cluster_build" 2>/dev/null; then
    kill -- "-$cluster_build" 2>/dev/null || true
    log "stopped the cluster's unfinished background build (log: build/cluster-build.log)"
  elif wait "$cluster_build"; then
    log "the cluster's background build is done: $(sed -n 's/^\[cluster-build\] \(.* built in .*\)/\1/p' build/cluster-build.log | paste -sd ';' -) (log: build/cluster-build.log)"
  else
    log "the cluster's background build failed (log: build/cluster-build.log)"
  fi
}

# Ends the cluster tests should this script stop before they do (an interrupt, a failed
# set-up): SIGINT makes pytest end the run through its fixtures' teardown, which takes the
# cluster down.
cluster_tests=""
end_cluster_tests() {
  if [ -n "$cluster_tests" ] && kill -0 "$cluster_tests" 2>/dev/null; then
    kill -INT "$cluster_tests" 2>/dev/null || true
    wait "$cluster_tests" 2>/dev/null || true
  fi
}

started=$(date +%s)
# The cluster's Go pieces are ~10 minutes of CPU on a fresh machine. For the whole suite they
# compile from the start, in the background at idle CPU and I/O priority, filling what the
# set-up's downloads, lint and the cluster tests' image build leave idle instead of adding to
# them; the cluster tests' `cluster.sh up` waits for them (build.sh holds a lock). The tests
# that time the service run after the cluster tests (pytest's second phase, below), so they
# do not share the CPU with this build; should the cluster tests fail before waiting, an
# idle-priority task yields the CPU to any other at once, and it is stopped when this script
# ends.
cluster_build=""
if [ "$(id -u)" -eq 0 ] && [ $# -eq 0 ] && [ -z "${KUBECONFIG:-}" ]; then
  mkdir -p build
  # Its own session, so that it can be stopped with its compilers as one process group.
  setsid chrt --idle 0 ionice -c 3 bash scripts/cluster/build.sh go >build/cluster-build.log 2>&1 &
  cluster_build=$!
fi
trap 'end_cluster_tests; [ -z "$cluster_build" ] || end_cluster_build' EXIT
ensure_venv dev
ensure_postgres
ensure_redis
# The Redis fault tests start and kill a redis-server of their own.
command -v redis-server >/dev/null || apt_install redis-server
# The benchmark's tests start its servers on the allocator the image preloads.
ensure_jemalloc
# The high-availability tests run Debian's pgbouncer, redis-server and redis-sentinel.
bash scripts/install-ha.sh
PATH="$(bash scripts/install-helm.sh):$PATH"
export PATH
bash scripts/install-promtool.sh
# The API-document tests: Debian's chromium for /docs, the pinned Redocly CLI as linter.
bash scripts/install-docs-tools.sh
if [ -f scripts/image.sh ]; then
  # The image tests build the container image with buildah; without it they say so and skip.
  bash scripts/image.sh ensure-tools || log "buildah unavailable: the image tests will skip"
fi
if [ "$(id -u)" -eq 0 ]; then
  # The cluster tests' Kubernetes, CoreDNS, containerd, etcd and Prometheus: built or fetched
  # once into a cache outside the checkout (the first time takes a while on a small machine).
  cluster_started=$(date +%s)
  # When the Go pieces are building in the background (above), `cluster.sh up` does the rest.
  [ -n "$cluster_build" ] || bash scripts/cluster/build.sh >/dev/null
  # Prometheus with Kubernetes discovery, built from its Go module (Debian's lacks it).
  bash scripts/cluster/build-prometheus.sh >/dev/null
  log "cluster binaries ready in $(( $(date +%s) - cluster_started ))s${cluster_build:+ (Kubernetes and CoreDNS: in the background)}"
fi
log "set-up took $(( $(date +%s) - started ))s"

log "ruff"
ruff check .
ruff format --check .
log "mypy --strict app"
mypy --strict app

status=0
if [ $# -gt 0 ]; then
  log "pytest $*"
  python -m pytest --cov=app --cov-report=term --cov-report=xml "$@" || status=$?
  exit "$status"
fi

# The whole suite in two phases. The cluster tests mostly wait on the cluster (0.7 of the
# 2 cores busy, warm) and so do the tests that neither load nor time the service (1.0): the
# first phase runs those side by side, the cluster's in the background with their output in
# a log printed when they end. The second phase runs everything else, alone on the machine:
# the fault, failover, load and security tests time the service under load. A test directory
# not named here lands in the second phase. The cluster tests run the service in pods, out of
# coverage's reach, so they run without it; the two other runs add to one coverage file.
beside_cluster=(tests/deploy tests/dashboards tests/docs tests/keys tests/test_*.py)
mkdir -p build
log "pytest, first phase: tests/cluster (in the background, build/cluster-tests.log) beside ${beside_cluster[*]}"
# A background job of a script starts with SIGINT ignored; the subshell takes it back.
(trap - INT; exec python -m pytest -p no:cacheprovider --no-cov tests/cluster) \
  >build/cluster-tests.log 2>&1 &
cluster_tests=$!
beside_status=0
python -m pytest --cov=app --cov-report= "${beside_cluster[@]}" || beside_status=$?
cluster_status=0
wait "$cluster_tests" || cluster_status=$?
cluster_tests=""
log "the cluster tests (exit status $cluster_status):"
cat build/cluster-tests.log
status=$((beside_status > cluster_status ? beside_status : cluster_status))
# pytest's exit status 1 is failed tests; 2 and above an interrupt (Ctrl-C reaches both runs)
# or a run that could not start: the suite stops there.
[ "$status" -le 1 ] || exit "$status"

log "pytest, second phase: the rest of tests/"
ignored=(--ignore=tests/cluster)
for path in "${beside_cluster[@]}"; do ignored+=("--ignore=$path"); done
python -m pytest --cov=app --cov-append --cov-report=term --cov-report=xml "${ignored[@]}" || status=$?
exit "$status"
