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

started=$(date +%s)
ensure_venv dev
ensure_postgres
ensure_redis
# The Redis fault tests start and kill a redis-server of their own.
command -v redis-server >/dev/null || apt_install redis-server
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
  bash scripts/cluster/build.sh >/dev/null
  # Prometheus with Kubernetes discovery, built from its Go module (Debian's lacks it).
  bash scripts/cluster/build-prometheus.sh >/dev/null
  log "cluster binaries ready in $(( $(date +%s) - cluster_started ))s"
fi
log "set-up took $(( $(date +%s) - started ))s"

log "ruff"
ruff check .
ruff format --check .
log "mypy --strict app"
mypy --strict app

log "pytest"
exec python -m pytest --cov=app --cov-report=term --cov-report=xml "$@"
