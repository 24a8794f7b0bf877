#!/usr/bin/env bash
# Builds the service's container image with buildah (no Docker engine needed) and runs it the way the chart does.
#
# Usage: scripts/image.sh COMMAND [ARGS]
#   ensure-tools   install buildah, debootstrap (and util-linux, python3 if absent) with apt-get when missing
#   base           build the local Debian base image once (cached; FORCE_BASE=1 rebuilds it)
#   build          ensure-tools + base, then build the project image from ./Dockerfile
#   inspect        print the image's config, size (against the base) and layers
#   run [OPTIONS] [-- ARGS...]
#                  run the image as a Kubernetes pod would: read-only root, tmpfs on the emptyDir
#                  paths, the image's USER/WORKDIR/ENV/ENTRYPOINT/CMD from `buildah inspect`,
#                  host network. Options:
#                    -e, --env K=V        add or override an environment variable (like env: in a pod spec)
#                    --env-file FILE      same, one K=V per line (blank lines and # comments skipped)
#                    --command WORD       replace the ENTRYPOINT (repeat for each word; like command:)
#                    --writable PATH      a tmpfs mount, repeatable (default: /tmp and /run/prometheus)
#                    --user UID[:GID]     like runAsUser: replaces the image's USER (must be numeric)
#                    ARGS after --        replace the CMD (like args:)
#                  SIGTERM/SIGINT to this script is forwarded as the image's STOPSIGNAL to the
#                  container's PID 1, as a kubelet does; SIGUSR1 kills it (SIGKILL after the grace period).
#   with-rootfs CMD...  run CMD with $ROOTFS set to a mounted copy of the image's root (host-side checks)
#   config         print the image's OCI config as JSON (what `run` obeys)
#   archive IMAGE OUT  write IMAGE from the store as a docker-archive (for `ctr images import`)
#   clean          remove the project image and any leftover run containers (keeps the base)
#
# Environment: IMAGE (localhost/user-service:dev), BASE_IMAGE_LOCAL (localhost/user-service-base:bookworm),
# IMAGE_CACHE_DIR (/var/tmp/user-service-image: the debootstrap tarball, kept across clones of the repo),
# STORE_DIR (/var/lib/containers/user-service: buildah's images), STORAGE_DRIVER (overlay if it mounts, else vfs),
# DEBIAN_MIRROR (default: the Debian mirror the host's apt sources name), VERSION, REVISION.
# Everything is idempotent and meant to run as root (CI runs as root on a fresh machine).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-localhost/user-service:dev}
BASE_IMAGE_LOCAL=${BASE_IMAGE_LOCAL:-localhost/user-service-base:bookworm}
# Outside the work tree so a fresh clone (CI) reuses it; /var/tmp survives reboots, unlike /tmp.
IMAGE_CACHE_DIR=${IMAGE_CACHE_DIR:-/var/tmp/user-service-image}
SUITE=bookworm
# ca-certificates: the published python:*-slim bases ship it, and pip in the build stage needs a CA bundle.
BASE_PACKAGES=python3,python3-venv,ca-certificates
# A private image store, so the driver choice below never clashes with another user's
# /var/lib/containers/storage (a store keeps the driver it was created with).
STORE_DIR=${STORE_DIR:-/var/lib/containers/user-service}

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || die "$1 needs root (mount namespaces, chroot, apt-get)"; }

cmd_ensure_tools() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v setpriv >/dev/null || missing+=(util-linux)
    command -v unshare >/dev/null || missing+=(util-linux)
    # run resolves the image config with a small Python helper on the host.
    command -v python3 >/dev/null || missing+=(python3)
    # debootstrap verifies the Release file against this keyring.
    [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
    if ((${#missing[@]} == 0)); then
        log "tools present: $(buildah --version), debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo '?')"
        return
    fi
    need_root ensure-tools
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "installed: $(buildah --version)"
}

# The Debian mirror the host already uses, from deb822 (*.sources) or one-line (*.list) apt sources.
debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local f url
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # A stanza whose Suites include the plain suite (not -security/-updates) and whose URI is a Debian archive.
        url=$(awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u=""; s=0; next }
            /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) u = $i }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) s = 1 }
            END { if (u != "" && s) print u }' "$f" | head -n1)
        if [[ -n $url ]]; then echo "$url"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        url=$(awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $(i+1) == suite && $i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
        if [[ -n $url ]]; then echo "$url"; return; fi
    done
    die "no Debian $SUITE mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR"
}

# overlay when the kernel can mount it here; vfs otherwise. vfs works anywhere but copies the whole root
# filesystem for every layer and every cached step (measured: a no-op rebuild took ~9 min vs ~12 s).
storage_driver() {
    if [[ -n ${STORAGE_DRIVER:-} ]]; then echo "$STORAGE_DRIVER"; return; fi
    local probe ok=vfs
    probe=$(mktemp -d /tmp/overlay-probe.XXXXXX)
    mkdir -p "$probe"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        ok=overlay
    fi
    rm -rf "$probe"
    echo "$ok"
}

init_buildah() {
    [[ -n ${BUILDAH+x} ]] && return
    STORAGE_DRIVER=$(storage_driver)
    BUILDAH=(buildah --storage-driver "$STORAGE_DRIVER" --root "$STORE_DIR/$STORAGE_DRIVER"
        --runroot "/run/user-service-containers/$STORAGE_DRIVER")
}

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# What the base is made of; a change (packages, suite, site CAs) rebuilds it.
base_key() {
    {
        echo "$SUITE $BASE_PACKAGES"
        cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
    } | sha256sum | cut -c1-16
}

cmd_base() {
    need_root base
    cmd_ensure_tools
    local key tarball
    key=$(base_key)
    if [[ -z ${FORCE_BASE:-} ]] && image_exists "$BASE_IMAGE_LOCAL" &&
        [[ $("${BUILDAH[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "local.base.key"}}' "$BASE_IMAGE_LOCAL") == "$key" ]]; then
        log "base $BASE_IMAGE_LOCAL is current (key $key)"
        return
    fi
    mkdir -p "$IMAGE_CACHE_DIR"
    tarball=$IMAGE_CACHE_DIR/base-$SUITE-$key.tar
    if [[ -n ${FORCE_BASE:-} || ! -s $tarball ]]; then
        local rootfs mirror started
        rootfs=$(mktemp -d "$IMAGE_CACHE_DIR/rootfs.XXXXXX")
        mirror=$(debian_mirror)
        started=$SECONDS
        log "debootstrap $SUITE from $mirror into $rootfs"
        debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" >"$IMAGE_CACHE_DIR/debootstrap.log" 2>&1 ||
            { tail -n 30 "$IMAGE_CACHE_DIR/debootstrap.log" >&2; rm -rf "$rootfs"; die "debootstrap failed (log: $IMAGE_CACHE_DIR/debootstrap.log)"; }
        # Trust what this host trusts: a site CA (e.g. a TLS-inspecting proxy) would otherwise break pip in the
        # build stage. Only the local base gets it; the Dockerfile's published default base is untouched.
        if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
            cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
            chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
        fi
        # Like the published slim images: no apt lists or package caches in the base.
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
            "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
        tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.partial" .
        mv "$tarball.partial" "$tarball"
        rm -rf "$rootfs"
        find "$IMAGE_CACHE_DIR" -maxdepth 1 -name "base-$SUITE-*.tar" ! -name "$(basename "$tarball")" -delete
        log "debootstrap took $((SECONDS - started)) s"
    else
        log "reusing cached rootfs $tarball"
    fi
    local ctr mnt
    ctr=$("${BUILDAH[@]}" from --name "user-service-base-$$" scratch)
    # Leave no half-made working container behind if anything below fails.
    trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' RETURN
    mnt=$("${BUILDAH[@]}" mount "$ctr")
    tar --numeric-owner --xattrs -C "$mnt" -xf "$tarball"
    "${BUILDAH[@]}" umount "$ctr" >/dev/null
    "${BUILDAH[@]}" config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --cmd /bin/bash \
        --label "local.base.key=$key" \
        --label "org.opencontainers.image.description=Debian $SUITE minbase with $BASE_PACKAGES (local stand-in for python:3.11-slim-$SUITE)" \
        "$ctr"
    "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$BASE_IMAGE_LOCAL" >/dev/null
    trap - RETURN
    log "committed $BASE_IMAGE_LOCAL"
}

cmd_build() {
    need_root build
    cmd_base
    local version revision created started
    version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n1)}
    revision=${REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    started=$SECONDS
    log "building $IMAGE (version $version, revision $revision) on $BASE_IMAGE_LOCAL, storage $STORAGE_DRIVER"
    # --layers keeps each step's result so an unchanged dependency set rebuilds in seconds.
    # --isolation chroot: no OCI runtime needed (crun/runc cannot set rlimits in this kind of sandbox).
    "${BUILDAH[@]}" build --isolation chroot --layers --pull-never \
        --build-arg "BASE_IMAGE=$BASE_IMAGE_LOCAL" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$created" \
        --tag "$IMAGE" --file "$ROOT/Dockerfile" "$ROOT"
    # Tag the build stage too, so pruning keeps its cached steps (the dependency wheels) for the next build;
    # every step is a cache hit here. Then drop the layers of superseded builds, which would fill the disk.
    "${BUILDAH[@]}" build --isolation chroot --layers --pull-never --quiet \
        --build-arg "BASE_IMAGE=$BASE_IMAGE_LOCAL" --target builder \
        --tag "$(builder_image)" --file "$ROOT/Dockerfile" "$ROOT" >/dev/null
    "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
    log "build took $((SECONDS - started)) s"
    cmd_inspect
}

# The OCI image config (User, Env, Entrypoint, Cmd, WorkingDir, StopSignal, Labels) as one JSON line.
image_json() {
    "${BUILDAH[@]}" inspect --type image "$IMAGE" | python3 -c "import json, sys; print(json.dumps(json.load(sys.stdin)['OCIv1']['$1']))"
}

cmd_config() { image_json config; }

# localhost/user-service:dev -> localhost/user-service-builder:dev
builder_image() { echo "${IMAGE%:*}-builder:${IMAGE##*:}"; }

cmd_inspect() {
    image_exists "$IMAGE" || die "no image $IMAGE: run scripts/image.sh build"
    local base_size="?"
    image_exists "$BASE_IMAGE_LOCAL" && base_size=$("${BUILDAH[@]}" images --noheading --format '{{.Size}}' "$BASE_IMAGE_LOCAL" | head -n1)
    echo "image:  $IMAGE  size $("${BUILDAH[@]}" images --noheading --format '{{.Size}}' "$IMAGE" | head -n1)"
    echo "base:   $BASE_IMAGE_LOCAL  size $base_size"
    echo "config: $(cmd_config)"
    echo "layers (history, oldest first; empty = metadata only):"
    image_json history | python3 -c '
import json, sys
layers = 0
for h in json.load(sys.stdin) or []:
    empty = h.get("empty_layer", False)
    layers += not empty
    print("  %s %s" % ("empty" if empty else "layer", h.get("created_by", "")[:150]))
print("  => %d filesystem layers" % layers)'
}

cmd_archive() {
    (($# == 2)) || die "archive: give IMAGE and OUT"
    image_exists "$1" || die "no image $1: run scripts/image.sh build"
    "${BUILDAH[@]}" push --quiet "$1" "docker-archive:$2:$1" >/dev/null
}

cmd_clean() {
    local c
    for c in $("${BUILDAH[@]}" containers --noheading --format '{{.ContainerName}}' 2>/dev/null | grep -E '^user-service-(run|check)-' || true); do
        "${BUILDAH[@]}" rm "$c" >/dev/null || true
    done
    for c in "$IMAGE" "$(builder_image)"; do
        if image_exists "$c"; then "${BUILDAH[@]}" rmi "$c" >/dev/null; fi
    done
    "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
}

cmd_run() {
    need_root run
    image_exists "$IMAGE" || die "no image $IMAGE: run scripts/image.sh build"
    local -a envs=() command=() args=() writable=()
    local have_args=0 user="" line
    while (($#)); do
        case $1 in
            -e | --env) envs+=("$2"); shift 2 ;;
            --env-file)
                while IFS= read -r line || [[ -n $line ]]; do
                    [[ -z $line || $line == \#* ]] || envs+=("$line")
                done <"$2"
                shift 2 ;;
            --command) command+=("$2"); shift 2 ;;
            --writable) writable+=("$2"); shift 2 ;;
            --user) user=$2; shift 2 ;;
            --) shift; args=("$@"); have_args=1; break ;;
            *) die "run: unknown option $1" ;;
        esac
    done
    # The chart's emptyDirs, unless the caller names the writable paths itself.
    ((${#writable[@]})) || writable=(/tmp /run/prometheus)

    local ctr mnt plan
    ctr=$("${BUILDAH[@]}" from --pull-never --name "user-service-run-$$" "$IMAGE")
    plan=$(mktemp -d /tmp/user-service-run.XXXXXX)
    # Globals: the EXIT trap runs after this function's locals are gone.
    RUN_CTR=$ctr RUN_PLAN=$plan RUN_CHILD=""
    cleanup() {
        if [[ -n $RUN_CHILD ]]; then kill -KILL "$RUN_CHILD" 2>/dev/null || true; fi
        "${BUILDAH[@]}" umount "$RUN_CTR" >/dev/null 2>&1 || true
        "${BUILDAH[@]}" rm "$RUN_CTR" >/dev/null 2>&1 || true
        rm -rf "$RUN_PLAN"
    }
    trap cleanup EXIT
    mnt=$("${BUILDAH[@]}" mount "$ctr")

    # Everything the process gets comes from the image config, as a container runtime takes it.
    # The request, NUL-separated so any byte but NUL survives: what the pod spec would say.
    if ((${#command[@]})); then printf '%s\0' "${command[@]}" >"$plan/request.command"; fi
    if ((have_args)); then printf '%s\0' "${args[@]}" >"$plan/request.args"; fi
    if ((${#envs[@]})); then printf '%s\0' "${envs[@]}" >"$plan/request.env"; fi
    printf '%s' "$user" >"$plan/request.user"
    python3 "$ROOT/scripts/image/plan.py" "$(cmd_config)" "$mnt" "$plan"
    # shellcheck disable=SC1091
    source "$plan/meta"

    # Mount points a runtime creates before making the root read-only (kubelet-managed files, emptyDirs).
    local p
    for p in "${writable[@]}" /proc /dev; do mkdir -p "$mnt$p"; done
    for p in /etc/hosts /etc/resolv.conf; do [[ -e $mnt$p ]] || : >"$mnt$p"; done

    # A stop request that arrives before PID 1 is known is delivered as soon as it is.
    # TERM/INT: the image's STOPSIGNAL, as a kubelet stops a container; USR1: SIGKILL, as after the grace period.
    RUN_PENDING=""
    forward() {
        if [[ -n $RUN_CHILD ]]; then kill -s "${1#SIG}" "$RUN_CHILD" 2>/dev/null || true; else RUN_PENDING=$1; fi
    }
    trap 'forward "$RUN_STOPSIGNAL"' TERM INT
    trap 'forward KILL' USR1
    # The namespace's PID 1 is the image's entrypoint, as in a pod without a shared process namespace.
    # No network namespace: the host network, so the local PostgreSQL and Redis are reachable.
    unshare --mount --pid --fork --kill-child -- \
        bash "$ROOT/scripts/image/enter.sh" "$mnt" "$plan" "$RUN_UID" "$RUN_GID" "$RUN_WORKDIR" "${writable[@]}" &
    local unshare_pid=$!
    # unshare --fork ignores SIGTERM itself; a kubelet signals the container's PID 1, so find it.
    for _ in $(seq 1 200); do
        RUN_CHILD=$(awk '{print $1}' "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null || true)
        [[ -n $RUN_CHILD ]] && break
        kill -0 "$unshare_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [[ -n $RUN_PENDING ]]; then forward "$RUN_PENDING"; fi
    local rc=0
    # wait returns early when a trapped signal arrives; keep waiting for the real exit.
    while :; do
        wait "$unshare_pid" && rc=0 || rc=$?
        kill -0 "$unshare_pid" 2>/dev/null || break
    done
    RUN_CHILD=""
    trap - TERM INT USR1
    return "$rc"
}

# Runs CMD with ROOTFS set to a mounted copy of the image's root filesystem (for checks from the host).
cmd_with_rootfs() {
    need_root with-rootfs
    image_exists "$IMAGE" || die "no image $IMAGE: run scripts/image.sh build"
    (($#)) || die "with-rootfs: give a command"
    local ctr rc=0
    ctr=$("${BUILDAH[@]}" from --pull-never --name "user-service-check-$$" "$IMAGE")
    ROOTFS=$("${BUILDAH[@]}" mount "$ctr") "$@" || rc=$?
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    return "$rc"
}

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
        base | build | inspect | config | run | with-rootfs | archive | clean) init_buildah ;;
    esac
    case $cmd in
        ensure-tools) cmd_ensure_tools ;;
        base) cmd_base ;;
        build) cmd_build ;;
        inspect) cmd_inspect ;;
        config) cmd_config ;;
        run) cmd_run "$@" ;;
        with-rootfs) cmd_with_rootfs "$@" ;;
        archive) cmd_archive "$@" ;;
        clean) cmd_clean ;;
        *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
