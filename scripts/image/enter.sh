#!/usr/bin/env bash
# Inside fresh mount and PID namespaces (scripts/image.sh run): make the container's root and exec its process.
#
# Usage: enter.sh ROOTFS PLAN_DIR UID GID WORKDIR WRITABLE_PATH...
# PLAN_DIR holds argv and env as NUL-separated lists, already resolved from the image config.
# Mounts made here vanish with the namespace (unshare -m makes propagation private).
set -euo pipefail

rootfs=$1 plan=$2 uid=$3 gid=$4 workdir=$5
shift 5

root=$plan/root
mkdir -p "$root"
# readOnlyRootFilesystem: the image's root, bind-mounted and then remounted read-only.
mount --bind "$rootfs" "$root"
mount -o remount,bind,ro "$root"

# The emptyDirs. Kubernetes makes them writable by the pod; mode 1777 does the same for any UID here.
for path in "$@"; do
    mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m tmpfs "$root$path"
done

mount -t proc -o nosuid,nodev,noexec proc "$root/proc"

# A minimal /dev as a container runtime makes it: the usual device nodes, /dev/shm and the fd links.
mount -t tmpfs -o mode=755,nosuid,size=64k tmpfs "$root/dev"
for dev in null zero full random urandom tty; do
    touch "$root/dev/$dev"
    mount --bind "/dev/$dev" "$root/dev/$dev"
done
mkdir "$root/dev/shm" "$root/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"

# The kubelet bind-mounts these managed files; with the host network the host's are the right ones.
for file in /etc/hosts /etc/resolv.conf; do
    [[ -e $file ]] || continue
    mount --bind "$file" "$root$file"
    mount -o remount,bind,ro "$root$file"
done

mapfile -d '' -t argv <"$plan/argv"
mapfile -d '' -t env <"$plan/env"

# chroot first (it needs a capability), then setpriv from the image (util-linux is essential in Debian
# images) drops to the image's USER. no_new_privs and an empty bounding set stand for the chart's
# allowPrivilegeEscalation: false and capabilities.drop: [ALL]. env -i: only the resolved environment.
exec chroot "$root" setpriv --reuid="$uid" --regid="$gid" --clear-groups \
    --no-new-privs --bounding-set=-all --inh-caps=-all \
    env -i --chdir="$workdir" "${env[@]}" "${argv[@]}"
