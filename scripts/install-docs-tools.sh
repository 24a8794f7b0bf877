#!/usr/bin/env bash
# Installs what the API-document tests drive: Debian's chromium and chromedriver (the /docs
# browser test) and the pinned Redocly CLI (the OpenAPI linter) into .tools/redocly.
#
# Usage: bash scripts/install-docs-tools.sh     (idempotent; a second run does nothing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly REDOCLY_VERSION="2.77.0"
tools_dir="${USER_SERVICE_TOOLS_DIR:-$PWD/.tools}"
redocly_dir="${tools_dir}/redocly-${REDOCLY_VERSION}"

log() { printf 'install-docs-tools: %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then log "chromium missing and not root: the browser test will fail"; exit 1; fi
  log "installing chromium and chromium-driver"
  # Another apt run on the machine holds the lock for a while: wait for it, not fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    chromium chromium-driver fonts-dejavu-core >/dev/null
fi

if [ ! -x "${redocly_dir}/node_modules/.bin/redocly" ]; then
  log "installing @redocly/cli@${REDOCLY_VERSION} into ${redocly_dir}"
  mkdir -p "${redocly_dir}"
  [[ -f "${tools_dir}/.gitignore" ]] || printf '*\n' >"${tools_dir}/.gitignore"
  npm install --silent --no-audit --no-fund --prefix "${redocly_dir}" \
    "@redocly/cli@${REDOCLY_VERSION}" >/dev/null
fi
log "chromium $(chromium --version 2>/dev/null | awk '{print $2}'), redocly ${REDOCLY_VERSION}"
