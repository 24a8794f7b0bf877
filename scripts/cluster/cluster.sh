#!/usr/bin/env bash
# Brings a single-node Kubernetes cluster up on this machine, and takes it down leaving nothing behind.
#
# Usage: scripts/cluster/cluster.sh COMMAND
#   up                 build or reuse the binaries (build.sh), then start etcd, kube-apiserver,
#                      kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy
#                      (iptables mode) and CoreDNS; wait until the node is Ready and DNS answers.
#                      Prints the kubeconfig path on stdout.
#   down               stop everything by pid; remove the pod sandboxes (and with them their
#                      netns, veths and IP leases), every iptables rule and chain the cluster
#                      made, its bridge, mounts and cgroups; restore the sysctls it changed.
#   import IMAGE...    load images into the node's containerd (IMAGE: a docker-archive .tar, or
#                      the name of an image in scripts/image.sh's buildah store)
#   env                print shell exports (KUBECONFIG, PATH, the host services' addresses)
#   status             say whether a cluster is up
#
# The node's address is the bridge's (10.244.0.1 by default); pods reach the host's
# PostgreSQL through a relay on that address (port 5432) and a Redis of the cluster's own
# (port 6379). Every port on the host is either on that address or a free loopback port.
# Root only: network namespaces, iptables, cgroups and mounts need it.
#
# Environment: USER_SERVICE_CLUSTER_RUN (state dir, default /var/tmp/user-service-cluster),
# USER_SERVICE_CLUSTER_NET (the /24 for pods, default 10.244.0), USER_SERVICE_CLUSTER_CACHE.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
run=${USER_SERVICE_CLUSTER_RUN:-/var/tmp/user-service-cluster}
net=${USER_SERVICE_CLUSTER_NET:-10.244.0}
readonly node_ip=$net.1 pod_cidr=$net.0/24 service_cidr=10.96.0.0/16
readonly api_service_ip=10.96.0.1 dns_service_ip=10.96.0.10
readonly bridge=usvc-br0 node_name=user-service-node cgroup_root=user-service-cluster
readonly fw_comment="user-service-cluster: pods stay on this machine"
# Kernel settings the kubelet, kube-proxy or the bridge plugin may change; put back on down.
readonly sysctls=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- certificates -------------------------------------------------------------------------
# cert NAME CN [O] [SANS]: a P-256 key and a certificate signed by the cluster's CA.
cert() {
  local name=$1 cn=$2 org=${3:-} sans=${4:-} subj="/CN=$2"
  [[ -n $org ]] && subj="/O=$org$subj"
  openssl ecparam -genkey -name prime256v1 -noout -out "$run/pki/$name.key" 2>/dev/null
  openssl req -new -key "$run/pki/$name.key" -subj "$subj" -out "$run/pki/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$run/pki/$name.ext"
  openssl x509 -req -in "$run/pki/$name.csr" -CA "$run/pki/ca.crt" -CAkey "$run/pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$run/pki/$name.ext" -out "$run/pki/$name.crt" 2>/dev/null
}

kubeconfig() { # NAME CERT: a kubeconfig that authenticates with pki/CERT.{crt,key}
  cat >"$run/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: user-service
    cluster:
      server: https://$node_ip:$API_PORT
      certificate-authority: $run/pki/ca.crt
users:
  - name: $2
    user:
      client-certificate: $run/pki/$2.crt
      client-key: $run/pki/$2.key
contexts:
  - name: user-service
    context: {cluster: user-service, user: $2}
current-context: user-service
EOF
}

make_pki() {
  mkdir -p "$run/pki"
  openssl ecparam -genkey -name prime256v1 -noout -out "$run/pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$run/pki/ca.key" -subj "/CN=user-service-cluster-ca" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$run/pki/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "IP:$node_ip,IP:$api_service_ip,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert kubelet "system:node:$node_name" system:nodes "IP:$node_ip,DNS:$node_name"
  cert kube-proxy system:kube-proxy
  openssl ecparam -genkey -name prime256v1 -noout -out "$run/pki/sa.key" 2>/dev/null
  openssl ec -in "$run/pki/sa.key" -pubout -out "$run/pki/sa.pub" 2>/dev/null
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet
  kubeconfig kube-proxy kube-proxy
}

# --- processes ----------------------------------------------------------------------------
# start NAME CMD...: run in the background with its log in $run/logs, its pid in $run/pids.
# Each in a session of its own: a Ctrl-C in the terminal that started the tests reaches the
# terminal's process group, and the cluster's daemons handle SIGINT as a shutdown; in that
# group they all stopped at once, before the tests' teardown could uninstall the release and
# take the cluster down in order, which then failed and left shims, a veth and cgroups
# behind. (setsid execs in place here, without a fork: a background job of a script is not a
# process group leader, so $! stays the daemon's pid.)
start() {
  local name=$1
  shift
  setsid "$@" >"$run/logs/$name.log" 2>&1 &
  echo $! >"$run/pids/$name"
}

stop() { # NAME [GRACE_SECONDS]
  local name=$1 grace=${2:-10} pid
  [[ -f $run/pids/$name ]] || return 0
  pid=$(cat "$run/pids/$name")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$run/pids/$name"
}

alive() { [[ -f $run/pids/$1 ]] && kill -0 "$(cat "$run/pids/$1")" 2>/dev/null; }

wait_for() { # WHAT SECONDS CMD...
  local what=$1 seconds=$2 i
  shift 2
  for ((i = 0; i < seconds * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "timed out after ${seconds}s waiting for $what; last log lines:"
  tail -n 20 "$run"/logs/*.log >&2 || true
  return 1
}

kubectl_admin() { kubectl --kubeconfig "$run/admin.kubeconfig" "$@"; }

# --- network ------------------------------------------------------------------------------
save_sysctls() {
  local key
  : >"$run/sysctls"
  for key in "${sysctls[@]}"; do
    if value=$(sysctl -n "$key" 2>/dev/null); then printf '%s=%s\n' "$key" "$value" >>"$run/sysctls"; fi
  done
}

restore_sysctls() {
  [[ -f $run/sysctls ]] || return 0
  local line
  while IFS= read -r line; do sysctl -q -w "$line" >/dev/null 2>&1 || log "could not restore $line"; done <"$run/sysctls"
}

setup_network() {
  ip link add "$bridge" type bridge
  ip addr add "$node_ip/24" dev "$bridge"
  ip link set "$bridge" up
  # Service addresses route onto the bridge: a packet kube-proxy has not rewritten (yet)
  # stays on this machine instead of leaving through the default route.
  ip route add "$service_cidr" dev "$bridge" src "$node_ip"
  # Pods talk to each other and to the host, never beyond it (the bridge plugin turns on
  # forwarding machine-wide).
  iptables -I FORWARD -i "$bridge" ! -o "$bridge" -m comment --comment "$fw_comment" -j DROP
  mkdir -p "$run/cni/net.d" "$run/cni/networks"
  cat >"$run/cni/net.d/10-user-service.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "user-service",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$run/cni/networks",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
}

# The cluster's own iptables chains (kube-proxy's KUBE-*, the kubelet's canaries), in every
# table and both families; nothing else is touched.
remove_iptables() {
  local cmd table chain
  while iptables -D FORWARD -i "$bridge" ! -o "$bridge" -m comment --comment "$fw_comment" -j DROP 2>/dev/null; do :; done
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle raw; do
      # Rules in built-in chains that jump to a KUBE-* chain.
      { "$cmd-save" -t "$table" 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' || true; } | sed 's/^-A/-D/' |
        while read -r rule; do eval "$cmd -t $table $rule" 2>/dev/null || true; done
      for chain in $("$cmd-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
        "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$cmd-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
        "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

# --- configuration ------------------------------------------------------------------------
write_configs() {
  cat >"$run/containerd.toml" <<EOF
version = 3
root = '$run/containerd/root'
state = '$run/containerd/state'
# Plugins that would create directories outside the state dir, or sockets nobody uses.
disabled_plugins = ['io.containerd.internal.v1.opt', 'io.containerd.nri.v1.nri', 'io.containerd.internal.v1.tracing']
[grpc]
  address = '$run/containerd.sock'
[ttrpc]
  address = '$run/containerd.sock.ttrpc'
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = '$SNAPSHOTTER'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'localhost/user-service-cluster/pause:1'
  [plugins.'io.containerd.cri.v1.runtime']
    # The pod sandbox lacks CAP_SYS_RESOURCE here; without this, runc fails to start it.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '$BIN/runc'
      SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$CNI_BIN']
      conf_dir = '$run/cni/net.d'
EOF
  cat >"$run/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $run/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $run/pki/kubelet.crt
tlsPrivateKeyFile: $run/pki/kubelet.key
containerRuntimeEndpoint: unix://$run/containerd.sock
# This machine has cgroup v1 (hybrid); recent kubelets refuse it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_root
failSwapOn: false
clusterDNS: [$dns_service_ip]
clusterDomain: cluster.local
resolvConf: $run/resolv.conf
podLogsDir: $run/pod-logs
maxPods: 40
serializeImagePulls: false
# Images are imported, never pulled: the kubelet must not garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
EOF
  cat >"$run/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $run/kube-proxy.kubeconfig}
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# NodePorts only on the cluster's own address: no route_localnet, nothing on the host's IPs.
nodePortAddresses: [$node_ip/32]
iptables: {localhostNodePorts: false, syncPeriod: 10s, minSyncPeriod: 0s}
# Zero leaves the machine's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  # Pods resolve only cluster names: there is no upstream DNS to forward to.
  printf '# no upstream resolver\n' >"$run/resolv.conf"
}

write_env() {
  cat >"$run/env" <<EOF
export KUBECONFIG=$run/admin.kubeconfig
export PATH=$BIN:$HELM_DIR:\$PATH
export USER_SERVICE_CLUSTER_NODE_IP=$node_ip
export USER_SERVICE_CLUSTER_POSTGRES=$node_ip:5432
export USER_SERVICE_CLUSTER_REDIS=$node_ip:6379
export USER_SERVICE_CLUSTER_CONTAINERD=$run/containerd.sock
export USER_SERVICE_CLUSTER_BIN=$BIN
EOF
}

snapshotter() {
  local probe ok=native
  probe=$(mktemp -d)
  mkdir -p "$probe"/{l,u,w,m}
  if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
    umount "$probe/m"
    ok=overlayfs
  fi
  rm -rf "$probe"
  echo "$ok"
}

# --- up -----------------------------------------------------------------------------------
cmd_up() {
  [[ $(id -u) == 0 ]] || die "up needs root"
  if [[ -f $run/env ]] && alive kube-apiserver; then
    log "a cluster is already up ($run); run down first"
    echo "$run/admin.kubeconfig"
    return 0
  fi
  # A previous run that was killed before its down: clean up what it left.
  [[ -d $run ]] && cmd_down
  local started=$SECONDS
  BIN=$(bash "$here/build.sh")
  HELM_DIR=$(USER_SERVICE_HELM_FORCE=1 bash "$root/scripts/install-helm.sh")
  export PATH="$BIN:$HELM_DIR:$PATH"
  CNI_BIN=/usr/lib/cni
  [[ -x $CNI_BIN/bridge ]] || { log "installing the CNI plugins"; apt-get install -y -qq containernetworking-plugins >/dev/null; }
  command -v redis-server >/dev/null || { log "installing Redis"; apt-get install -y -qq redis-server >/dev/null; }
  log "binaries ready after $((SECONDS - started)) s"
  mkdir -p "$run"/{logs,pids,etcd,kubelet,pod-logs,containerd}
  save_sysctls
  ETCD_PORT=$(free_port) ETCD_PEER_PORT=$(free_port) API_PORT=$(free_port)
  CM_PORT=$(free_port) SCHED_PORT=$(free_port) KUBELET_PORT=$(free_port)
  KUBELET_HEALTHZ_PORT=$(free_port) PROXY_HEALTHZ_PORT=$(free_port) PROXY_METRICS_PORT=$(free_port)
  SNAPSHOTTER=$(snapshotter)
  make_pki
  setup_network
  write_configs
  write_env
  local c
  for c in cpu cpuacct cpuset memory devices freezer blkio pids systemd hugetlb net_cls perf_event; do
    [[ -d /sys/fs/cgroup/$c ]] && mkdir -p "/sys/fs/cgroup/$c/$cgroup_root"
  done
  if [[ -d /sys/fs/cgroup/cpuset/$cgroup_root ]]; then
    # A new cpuset cgroup starts empty; inherit the parent's CPUs and memory nodes.
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$cgroup_root/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$cgroup_root/cpuset.mems"
  fi

  start etcd etcd --name user-service --data-dir "$run/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "user-service=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 1073741824
  start containerd containerd --config "$run/containerd.toml"
  # The default admission plugins already include PodSecurity; NodeRestriction is what
  # kubeadm adds. Both are named so a reader sees them. The apiserver reaches the kubelet
  # (exec, logs, port-forward) at the node's IP: no resolver knows the node's name.
  start kube-apiserver kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$node_ip" --advertise-address "$node_ip" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$service_cidr" --allow-privileged=true \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction,PodSecurity \
    --client-ca-file "$run/pki/ca.crt" \
    --tls-cert-file "$run/pki/apiserver.crt" --tls-private-key-file "$run/pki/apiserver.key" \
    --kubelet-client-certificate "$run/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$run/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$run/pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$run/pki/sa.pub" --service-account-signing-key-file "$run/pki/sa.key" \
    --profiling=false --event-ttl 1h
  wait_for "kube-apiserver" 90 kubectl_admin get --raw /readyz
  start kube-controller-manager kube-controller-manager --kubeconfig "$run/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$run/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$run/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$CM_PORT" --leader-elect=false \
    --cluster-signing-cert-file "$run/pki/ca.crt" --cluster-signing-key-file "$run/pki/ca.key" \
    --root-ca-file "$run/pki/ca.crt" --service-account-private-key-file "$run/pki/sa.key" \
    --use-service-account-credentials=true --service-cluster-ip-range "$service_cidr" \
    --profiling=false
  start kube-scheduler kube-scheduler --kubeconfig "$run/scheduler.kubeconfig" \
    --authentication-kubeconfig "$run/scheduler.kubeconfig" \
    --authorization-kubeconfig "$run/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false
  wait_for containerd 30 ctr --address "$run/containerd.sock" version
  import_archive "$BIN/pause.tar"
  import_archive "$BIN/coredns.tar"
  # --containerd: the kubelet's cAdvisor finds containers' names, pods and namespaces through
  # containerd's socket, which is not at the default path here; without it /metrics/cadvisor
  # has no container-level series for the dashboards' Pods row.
  start kubelet kubelet --config "$run/kubelet.yaml" --kubeconfig "$run/kubelet.kubeconfig" \
    --root-dir "$run/kubelet" --hostname-override "$node_name" --node-ip "$node_ip" \
    --containerd "$run/containerd.sock"
  start kube-proxy kube-proxy --config "$run/kube-proxy.yaml"
  start relay-postgres python3 "$here/relay.py" "$node_ip" 5432 127.0.0.1 5432
  start redis redis-server --bind "$node_ip" --port 6379 --save "" --appendonly no --protected-mode no
  wait_for "node Ready" 90 kubectl_admin wait --for=condition=Ready "node/$node_name" --timeout=1s
  # The default ServiceAccount must exist before any pod can be created in a namespace.
  wait_for "default ServiceAccount" 60 kubectl_admin -n default get serviceaccount default
  sed -e "s/@DNS_SERVICE_IP@/$dns_service_ip/" -e "s/@COREDNS_IMAGE@/localhost\/user-service-cluster\/coredns:$(coredns_tag)/" \
    "$here/coredns.yaml" | kubectl_admin apply -f - >/dev/null
  wait_for "CoreDNS" 120 kubectl_admin -n kube-system rollout status deployment/coredns --timeout=1s
  log "cluster up in $((SECONDS - started)) s: KUBECONFIG=$run/admin.kubeconfig"
  echo "$run/admin.kubeconfig"
}

coredns_tag() { sed -n 's/^readonly COREDNS_VERSION=//p' "$here/build.sh"; }

import_archive() {
  ctr --address "$run/containerd.sock" -n k8s.io images import --snapshotter "$SNAPSHOTTER" "$1" >/dev/null
}

cmd_import() {
  [[ -f $run/env ]] || die "no cluster is up"
  # shellcheck disable=SC1091
  source "$run/env"
  SNAPSHOTTER=$(sed -n "s/^ *snapshotter = '\(.*\)'/\1/p" "$run/containerd.toml")
  local image archive
  for image in "$@"; do
    if [[ -f $image ]]; then
      import_archive "$image"
    else
      archive=$(mktemp -u "$run/import.XXXXXX.tar")
      bash "$root/scripts/image.sh" archive "$image" "$archive"
      import_archive "$archive"
      rm -f "$archive"
    fi
    log "imported $image"
  done
}

# --- down ---------------------------------------------------------------------------------
cmd_down() {
  [[ -d $run ]] || { log "no cluster state in $run"; return 0; }
  local started=$SECONDS
  [[ -f $run/env ]] && source "$run/env" 2>/dev/null || true
  stop kubelet 15
  if alive containerd; then
    "${USER_SERVICE_CLUSTER_BIN:-$here}/kube" cri-teardown "unix://$run/containerd.sock" >&2 || log "some pod sandboxes could not be removed"
  fi
  stop kube-proxy
  # kube-proxy's own cleanup knows every chain it made in both families.
  if [[ -x ${USER_SERVICE_CLUSTER_BIN:-/nonexistent}/kube-proxy ]]; then
    "$USER_SERVICE_CLUSTER_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  remove_iptables
  stop containerd
  # Shims outlive containerd; any still running belong to containers that survived the teardown.
  pkill_shims
  local name
  for name in redis relay-postgres kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$name"; done
  # Mounts under the state dir (pod volumes, the rootfs of containers, netns files), deepest first.
  { findmnt -rn -o TARGET | grep -F "$run/" || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"
  remove_cgroups
  restore_sysctls
  rm -rf "$run"
  log "cluster down in $((SECONDS - started)) s"
  leftovers
}

# Fails naming anything the cluster made that is still there.
leftovers() {
  local found=()
  ip link show "$bridge" >/dev/null 2>&1 && found+=("bridge $bridge")
  ip -o link show type veth 2>/dev/null | grep -q "master $bridge" && found+=("veths on $bridge")
  iptables-save 2>/dev/null | grep -qE '(^:KUBE-|-j KUBE-|user-service-cluster)' && found+=("iptables rules")
  ip6tables-save 2>/dev/null | grep -qE '(^:KUBE-|-j KUBE-)' && found+=("ip6tables rules")
  findmnt -rn -o TARGET | grep -qF "$run/" && found+=("mounts under $run")
  compgen -G "/sys/fs/cgroup/*/$cgroup_root" >/dev/null && found+=("cgroups $cgroup_root")
  ((${#found[@]} == 0)) || die "left behind: ${found[*]}"
}

pkill_shims() {
  local file pid
  # containerd records each shim's pid in its state dir; a shim is the parent of a container.
  find "$run/containerd/state" -name shim.pid 2>/dev/null | while read -r file; do
    pid=$(cat "$file")
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
  done
}

remove_cgroups() {
  local c dir
  for c in /sys/fs/cgroup/*/; do
    dir=$c$cgroup_root
    [[ -d $dir ]] || continue
    # Any process still inside belongs to this cluster; then remove the tree deepest first.
    find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d $dir ]] && log "cgroup $dir could not be removed"
  done
  return 0
}

cmd_env() {
  [[ -f $run/env ]] || die "no cluster is up"
  cat "$run/env"
}

cmd_status() {
  if [[ -f $run/env ]] && alive kube-apiserver; then echo "up: $run"; else echo "down"; return 1; fi
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  import) shift; cmd_import "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
