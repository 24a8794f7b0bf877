#!/usr/bin/env bash
# Installs what the high-availability tests run for real: Debian's pgbouncer, redis-server and
# redis-sentinel (PostgreSQL's initdb/pg_basebackup/pg_ctl come with the postgresql package).
#
# Usage: scripts/install-ha.sh   (needs root or sudo for apt-get; a no-op once installed)
#
# The tests start their own pgbouncer, Redis servers and sentinels on free loopback ports, so
# the packaged system services are kept from starting (policy-rc.d) and stopped if they run
# anyway: a stray pgbouncer on :6432 or sentinel on :26379 would only waste memory.
set -euo pipefail

# shellcheck source=lib/apt-quiet.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt-quiet.sh"

log() { printf 'install-ha: %s\n' "$*" >&2; }

missing() {
  local wanted=()
  command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || wanted+=(pgbouncer)
  command -v redis-server >/dev/null 2>&1 || wanted+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || wanted+=(redis-sentinel)
  printf '%s\n' "${wanted[@]}"
}

stop_packaged_services() {
  local service
  for service in pgbouncer redis-sentinel; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "${service}" 2>/dev/null; then
      log "stopping the packaged ${service} service (the tests run their own)"
      ${SUDO} systemctl stop "${service}" || true
    fi
    if [[ -x "/etc/init.d/${service}" ]] && ${SUDO} "/etc/init.d/${service}" status >/dev/null 2>&1; then
      ${SUDO} "/etc/init.d/${service}" stop >/dev/null 2>&1 || true
    fi
  done
}

SUDO=""
mapfile -t packages < <(missing | sed '/^$/d')
if [[ "$(id -u)" != "0" ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  elif ((${#packages[@]})); then
    log "missing ${packages[*]} and this user cannot run apt-get (no root, no sudo)"
    exit 1
  fi
fi

if ((${#packages[@]} == 0)); then
  log "already installed: pgbouncer, redis-server, redis-sentinel"
  stop_packaged_services
  exit 0
fi

log "installing Debian packages: ${packages[*]}"
apt_install_without_starting "${SUDO}" "${packages[@]}"
stop_packaged_services
[[ -z "$(missing | sed '/^$/d')" ]] || { log "still missing: $(missing | xargs)"; exit 1; }
log "installed: pgbouncer, redis-server, redis-sentinel"
