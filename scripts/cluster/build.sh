#!/usr/bin/env bash
# Builds or fetches every binary and image of the local test cluster into a cache outside the checkout.
#
# Usage: scripts/cluster/build.sh        prints the directory holding the binaries (stdout only)
#        scripts/cluster/build.sh go     builds only what is compiled from Go and prints nothing:
#                                        scripts/test.sh starts it first thing, in the background,
#                                        and a later build.sh waits for it instead of building twice
#
# Kubernetes (one multi-call binary: kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy), the pause process and CoreDNS are built from pinned Go modules;
# containerd 2.x and etcd come from Debian's newer suites through a private apt configuration
# (the machine's own apt sources are never touched), runc from the machine's own suite, the
# CNI plugins from the machine's package. Each piece lives in a directory named after its
# version and inputs, so a second run (or a fresh clone on the same machine) reuses it.
# Everything but the printed directory goes to stderr, so the output can feed a variable.
#
# Environment: USER_SERVICE_CLUSTER_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/user-service/cluster)
set -euo pipefail

readonly KUBE_VERSION=v1.36.3
readonly COREDNS_VERSION=v1.14.7
# Debian packages: name, version, the suite that carries it, and the archive's SHA256.
# containerd 2.x is only in the newer suites (the kubelet of this release needs 2.x); runc
# must come from the machine's own suite (the newer ones need a newer glibc).
readonly DEBS=(
  "containerd 2.1.9+ds1-5 sid 2dda86ce7033fd612fc50e136679d8174ccad680eb29cd4611e0d2a1b84cf591"
  "etcd-server 3.5.16-4 trixie 0875921bb0d023f2af9b8e15cdfbe417a03e65731345fb832c40f9c2dd72967b"
  "runc 1.1.5+ds1-1+deb12u1 system a00351f8c0318de0b424ecf5cd0fdb69880a89f3511cae4f6fff7de3e57881c5"
)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Where the Go toolchain lives on the project's machines, when PATH does not name it.
[[ -x /usr/local/go/bin/go ]] && PATH=$PATH:/usr/local/go/bin
cache=${USER_SERVICE_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/user-service/cluster}

log() { printf '[cluster-build] %s\n' "$*" >&2; }
die() { printf '[cluster-build] error: %s\n' "$*" >&2; exit 1; }

# A short digest of files' contents: a change to the Go sources gives a new cache directory.
digest() { cat "$@" | sha256sum | cut -c1-12; }

# How every Go piece is compiled. A cold build's CPU is almost all compiling (~2500 packages
# for Kubernetes, the link is seconds); -dwarf=false spares the compiler the debug
# information that the linker's -w throws away anyway (about a tenth of that CPU). Part of
# each piece's cache key, so a change here rebuilds.
readonly GO_GCFLAGS="all=-dwarf=false"
readonly GO_LDFLAGS="-s -w"

go_build() { # DIR OUT PACKAGE [LDFLAGS]
  local dir=$1 out=$2 pkg=$3 ldflags=${4:-}
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=auto \
    go build -trimpath -gcflags "$GO_GCFLAGS" -ldflags "$GO_LDFLAGS $ldflags" -o "$out.partial" "$pkg")
  mv -f "$out.partial" "$out"
}

kube_dir() {
  echo "$cache/kube-$KUBE_VERSION-$(digest "$here"/kube/go.mod "$here"/kube/go.sum "$here"/kube/*.go \
    "$here"/kube/pause/*.go <(echo "$GO_GCFLAGS $GO_LDFLAGS"))"
}
coredns_dir() {
  echo "$cache/coredns-$COREDNS_VERSION-$(digest "$here"/coredns/go.mod "$here"/coredns/go.sum \
    "$here"/coredns/*.go <(echo "$GO_GCFLAGS $GO_LDFLAGS"))"
}
kube_built() { [[ -x $1/kube && -x $1/pause ]]; }
coredns_built() { [[ -x $1/coredns ]]; }

build_kube() { # DIR
  local dir=$1 started
  command -v go >/dev/null || die "go is needed to build Kubernetes $KUBE_VERSION"
  mkdir -p "$dir"
  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  # Without these the server reports v0.0.0 and any chart with a kubeVersion constraint fails.
  local v=k8s.io/component-base/version
  local ldflags="-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  started=$SECONDS
  log "building Kubernetes $KUBE_VERSION (one binary for five components; the first build takes a while)"
  go_build "$here/kube" "$dir/kube" . "$ldflags"
  go_build "$here/kube" "$dir/pause" ./pause
  log "Kubernetes built in $((SECONDS - started)) s"
}

build_coredns() { # DIR
  local dir=$1 started
  command -v go >/dev/null || die "go is needed to build CoreDNS $COREDNS_VERSION"
  mkdir -p "$dir"
  started=$SECONDS
  log "building CoreDNS $COREDNS_VERSION"
  go_build "$here/coredns" "$dir/coredns" .
  log "CoreDNS built in $((SECONDS - started)) s"
}

# Builds Kubernetes and CoreDNS unless cached; sets KUBE and COREDNS to their directories.
# One build.sh at a time compiles (a lock in the cache): another one, such as the one
# scripts/test.sh started in the background, is waited for and its result reused. The two
# build one after the other: side by side, they compiled what they share (the standard
# library, dependencies at the same version) twice.
go_pieces() {
  KUBE=$(kube_dir)
  COREDNS=$(coredns_dir)
  kube_built "$KUBE" && coredns_built "$COREDNS" && return
  exec 8>"$cache/.go-build.lock"
  if ! flock -n 8; then
    log "waiting for the build.sh already compiling the cluster's Go pieces (for example the one scripts/test.sh started early)"
    flock 8
  fi
  kube_built "$KUBE" || build_kube "$KUBE"
  coredns_built "$COREDNS" || build_coredns "$COREDNS"
  exec 8>&-
}

# apt options for the private configuration: its own sources, lists and cache under $cache/apt.
private_apt() {
  local apt=$cache/apt
  mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/lists/partial" "$apt/cache/archives/partial"
  if [[ ! -f $apt/etc/sources.list ]]; then
    local mirror=http://deb.debian.org/debian
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
      "$mirror" trixie "$mirror" sid >"$apt/etc/sources.list"
  fi
  APT_OPTS=(-o "Dir::Etc::SourceList=$apt/etc/sources.list" -o "Dir::Etc::SourceParts=$apt/etc/sources.list.d"
    -o "Dir::Etc::Preferences=$apt/etc/preferences" -o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Architecture=amd64
    -o Acquire::Languages=none -o APT::Sandbox::User=root)
}

fetch_deb() { # NAME VERSION SUITE SHA256 -> prints the directory it is unpacked in
  local name=$1 version=$2 suite=$3 sha=$4 dir work deb
  dir=$cache/debs/${name}_${version}
  if [[ -f $dir/.done ]]; then echo "$dir"; return; fi
  work=$(mktemp -d "$cache/debs/.fetch.XXXXXX")
  if [[ $suite == system ]]; then
    (cd "$work" && apt-get download -o APT::Sandbox::User=root "$name=$version" >&2) ||
      { apt-get update -qq >&2 && (cd "$work" && apt-get download -o APT::Sandbox::User=root "$name=$version" >&2); }
  else
    private_apt
    if ! (cd "$work" && apt-get "${APT_OPTS[@]}" download "$name=$version" >&2 2>/dev/null); then
      log "refreshing the private apt lists (trixie, sid)"
      apt-get "${APT_OPTS[@]}" update -qq >&2
      if ! (cd "$work" && apt-get "${APT_OPTS[@]}" download "$name=$version" >&2); then
        # sid drops superseded versions within days. apt still checks what it downloads
        # against the suite's signed index, so take the suite's current one and say so.
        log "WARNING: $name $version is gone from Debian $suite; using the version $suite carries now (pin it in ${BASH_SOURCE[0]})"
        (cd "$work" && apt-get "${APT_OPTS[@]}" download "$name/$suite" >&2) || die "$name is not in Debian $suite"
        sha=""
      fi
    fi
  fi
  deb=$(ls "$work"/*.deb)
  [[ -z $sha || $(sha256sum "$deb" | cut -d' ' -f1) == "$sha" ]] || die "checksum mismatch for $deb"
  rm -rf "$dir"
  mkdir -p "$dir"
  dpkg-deb -x "$deb" "$dir"
  rm -rf "$work"
  touch "$dir/.done"
  echo "$dir"
}

# A docker-archive holding one static binary, for `ctr images import` (no registry to pull from).
image_archive() { # NAME:TAG BINARY ENTRYPOINT-PATH OUT
  local out=$4
  [[ -s $out ]] && return
  python3 "$here/image_archive.py" "$1" "$2" "$3" "$out.partial"
  mv -f "$out.partial" "$out"
}

main() {
  [[ $# == 0 || $* == go ]] || die "unknown arguments: $* (usage: build.sh [go])"
  mkdir -p "$cache/debs"
  go_pieces
  [[ ${1:-} == go ]] && return
  local kube=$KUBE coredns=$COREDNS bin line name version suite sha dir f
  bin=$cache/bin-$(printf '%s\n' "$kube" "$coredns" "${DEBS[@]}" | sha256sum | cut -c1-12)
  if [[ -f $bin/.done ]]; then
    log "cluster binaries cached in $bin"
    echo "$bin"
    return
  fi
  mkdir -p "$bin"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    ln -sfn "$kube/kube" "$bin/$c"
  done
  ln -sfn "$kube/kube" "$bin/kube"
  ln -sfn "$coredns/coredns" "$bin/coredns"
  for line in "${DEBS[@]}"; do
    read -r name version suite sha <<<"$line"
    dir=$(fetch_deb "$name" "$version" "$suite" "$sha")
    for f in "$dir"/usr/bin/* "$dir"/usr/sbin/*; do
      # Real executables only: runc's /usr/bin/runc is a relative link to ../sbin/runc.
      if [[ -f $f && -x $f && ! -L $f ]]; then ln -sfn "$f" "$bin/$(basename "$f")"; fi
    done
  done
  image_archive localhost/user-service-cluster/pause:1 "$kube/pause" /pause "$bin/pause.tar"
  image_archive "localhost/user-service-cluster/coredns:$COREDNS_VERSION" "$coredns/coredns" /coredns "$bin/coredns.tar"
  touch "$bin/.done"
  log "cluster binaries ready in $bin"
  echo "$bin"
}

main "$@"
