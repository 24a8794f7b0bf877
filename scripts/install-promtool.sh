#!/usr/bin/env bash
# Installs promtool and the prometheus server from Debian's `prometheus` package when missing.
#
# Usage: scripts/install-promtool.sh   (needs root or sudo for apt-get; no-op when installed)
#
# The dashboard tests start their own Prometheus on a free loopback port, so the packaged
# system service is kept from starting (policy-rc.d) and stopped if it runs anyway: a stray
# server on :9090 would only waste memory and confuse whoever reads `ss -ltnp`.
set -euo pipefail

# shellcheck source=lib/apt-quiet.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt-quiet.sh"

log() { printf 'install-promtool: %s\n' "$*" >&2; }

have_tools() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }

stop_packaged_service() {
  # Either init system may be in charge; ignore "not running" answers from both.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    log "stopping the packaged prometheus service (tests run their own)"
    ${SUDO} systemctl stop prometheus || true
  fi
  if [[ -x /etc/init.d/prometheus ]] && ${SUDO} /etc/init.d/prometheus status >/dev/null 2>&1; then
    log "stopping the packaged prometheus init script"
    ${SUDO} /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
}

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  elif ! have_tools; then
    log "promtool is missing and this user cannot run apt-get (no root, no sudo)"
    exit 1
  fi
fi

if have_tools; then
  log "already installed: $(promtool --version 2>&1 | head -n1)"
  stop_packaged_service
  exit 0
fi

log "installing Debian package prometheus (promtool + server)"
apt_install_without_starting "${SUDO}" prometheus

stop_packaged_service
have_tools || { log "prometheus package installed but promtool is still not on PATH"; exit 1; }
log "installed: $(promtool --version 2>&1 | head -n1)"
