#!/usr/bin/env bash
# Builds the pinned Prometheus server from its Go module into a cache outside the checkout.
#
# Usage: scripts/cluster/build-prometheus.sh     prints the directory holding `prometheus`
#
# The cluster tests scrape the chart's pods through Kubernetes service discovery, which
# Debian's Prometheus 2.42 does not offer in a usable form. Only the Kubernetes discoverer is
# compiled in (the other service discoveries pull in every cloud SDK and double the build),
# and the web UI's assets are left out: the tests use the HTTP API only. The binary lives in
# a directory named after the version and build flags, so a second run reuses it.
# Everything but the printed directory goes to stderr, so the output can feed a variable.
#
# Environment: USER_SERVICE_CLUSTER_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/user-service/cluster)
set -euo pipefail

# Prometheus 3.16.0: the Go module carries the release as v0.<major><minor>.<patch>.
readonly MODULE_VERSION=v0.316.0
readonly RELEASE=3.16.0
readonly TAGS=remove_all_sd,enable_kubernetes_sd

[[ -x /usr/local/go/bin/go ]] && PATH=$PATH:/usr/local/go/bin
cache=${USER_SERVICE_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/user-service/cluster}
log() { printf '[prometheus-build] %s\n' "$*" >&2; }

key=$(printf '%s\n' "$MODULE_VERSION" "$TAGS" | sha256sum | cut -c1-12)
dir=$cache/prometheus-$RELEASE-$key
mkdir -p "$cache"
# One build at a time: a second caller (the set-up and a test run started by hand) waits for
# the first and then finds the binary.
exec 9>"$cache/.prometheus-build.lock"
flock 9
if [[ -x $dir/prometheus ]]; then
  log "Prometheus $RELEASE cached in $dir"
  echo "$dir"
  exit 0
fi
command -v go >/dev/null || { log "error: go is needed to build Prometheus $RELEASE"; exit 1; }
started=$SECONDS
log "building Prometheus $RELEASE from its Go module (Kubernetes discovery only)"
partial=$(mktemp -d "${dir}.partial.XXXXXX")
trap 'rm -rf "$partial"' EXIT
v=github.com/prometheus/common/version
CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=auto GOBIN=$partial \
  go install -trimpath -tags "$TAGS" \
  -ldflags "-s -w -X $v.Version=$RELEASE -X $v.Revision=$MODULE_VERSION -X $v.Branch=release -X $v.BuildUser=user-service -X $v.BuildDate=19700101-00:00:00" \
  "github.com/prometheus/prometheus/cmd/prometheus@$MODULE_VERSION"
"$partial/prometheus" --version >&2
chmod 755 "$partial"
rm -rf "$dir"
mv "$partial" "$dir"
log "Prometheus $RELEASE built in $((SECONDS - started)) s"
echo "$dir"
