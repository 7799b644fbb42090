# shellcheck shell=bash
# Real container runtimes for the container tests: containerd (with runc)
# and Docker from Debian's packages, on state directories of their own so
# they never touch the machine's. Source this file, then:
#   install_runtimes   containerd, runc, docker.io, busybox-static (as root, when missing)
#   start_runtimes     both daemons, and a busybox image imported into each;
#                      exports their paths; stops them and cleans up on exit
# Exported for the tests:
#   CUSTODY_TEST_CONTAINERD_ROOT, CUSTODY_TEST_CONTAINERD_STATE, CUSTODY_TEST_CONTAINERD_SOCK
#   CUSTODY_TEST_DOCKER_ROOT, CUSTODY_TEST_DOCKER_HOST, CUSTODY_TEST_DOCKER (the client)
#   CUSTODY_TEST_IMAGE (Docker's name) and CUSTODY_TEST_CTR_IMAGE (containerd's, namespace k8s.io)

install_runtimes() {
  local missing=()
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
  [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || missing+=(busybox-static)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "runtimes: installing ${missing[*]} (Debian packages)" >&2
    if [ "$(id -u)" -ne 0 ]; then
      echo "runtimes: run as root, or install ${missing[*]} first" >&2
      return 1
    fi
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; }
  fi
}

_runtime_dir=""

stop_runtimes() {
  [ -n "$_runtime_dir" ] || return 0
  local d="$_runtime_dir"
  _runtime_dir=""
  DOCKER_HOST="unix://$d/docker.sock" /usr/bin/docker ps -aq 2>/dev/null \
    | xargs -r env DOCKER_HOST="unix://$d/docker.sock" /usr/bin/docker rm -f >/dev/null 2>&1 || true
  if [ -f "$d/docker.pid" ]; then kill "$(cat "$d/docker.pid")" 2>/dev/null || true; fi
  local ns id
  for ns in $(ctr -a "$d/containerd.sock" namespaces ls -q 2>/dev/null); do
    for id in $(ctr -a "$d/containerd.sock" -n "$ns" tasks ls -q 2>/dev/null); do
      ctr -a "$d/containerd.sock" -n "$ns" tasks kill -s KILL "$id" >/dev/null 2>&1 || true
    done
  done
  sleep 0.5
  pkill -f "containerd-shim.*$d" 2>/dev/null || true
  if [ -f "$d/containerd.pid" ]; then kill "$(cat "$d/containerd.pid")" 2>/dev/null || true; fi
  sleep 0.5
  # Overlay and shm mounts the runtimes left behind, deepest first.
  awk -v d="$d" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$d"
}

_wait_socket() {
  local i
  for i in $(seq 1 150); do
    [ -S "$1" ] && return 0
    sleep 0.1
  done
  return 1
}

start_runtimes() {
  # A short path: unix socket paths are limited to 108 bytes.
  _runtime_dir="$(mktemp -d /tmp/custody-rt.XXXXXX)"
  local d="$_runtime_dir"
  local logs="${EMULATOR_LOGS:-$d}"
  mkdir -p "$logs"
  # No CRI plugin: the tests drive containerd directly, in namespace k8s.io as kubelet does.
  printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' >"$d/containerd.toml"
  containerd --config "$d/containerd.toml" --root "$d/containerd" --state "$d/containerd-state" \
    --address "$d/containerd.sock" >"$logs/containerd.log" 2>&1 &
  echo $! >"$d/containerd.pid"
  if ! _wait_socket "$d/containerd.sock"; then
    echo "runtimes: containerd did not start; its log:" >&2
    cat "$logs/containerd.log" >&2
    return 1
  fi
  dockerd --data-root "$d/docker" --exec-root "$d/docker-exec" -H "unix://$d/docker.sock" \
    --pidfile "$d/docker.pid" --containerd "$d/containerd.sock" \
    --iptables=false --ip6tables=false --bridge=none >"$logs/dockerd.log" 2>&1 &
  if ! _wait_socket "$d/docker.sock"; then
    echo "runtimes: dockerd did not start; its log:" >&2
    cat "$logs/dockerd.log" >&2
    return 1
  fi
  export CUSTODY_TEST_DOCKER=/usr/bin/docker
  export CUSTODY_TEST_DOCKER_HOST="unix://$d/docker.sock"
  local i
  for i in $(seq 1 100); do
    DOCKER_HOST="$CUSTODY_TEST_DOCKER_HOST" /usr/bin/docker version >/dev/null 2>&1 && break
    sleep 0.1
  done
  # No registry here: a root file system of busybox-static, imported into both.
  local rootfs="$d/rootfs"
  mkdir -p "$rootfs/bin" "$rootfs/etc/keep" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for i in $(/bin/busybox --list); do
    [ "$i" = busybox ] || ln -s busybox "$rootfs/bin/$i"
  done
  echo welcome >"$rootfs/etc/motd"
  echo a >"$rootfs/etc/keep/a"
  echo b >"$rootfs/etc/keep/b"
  tar -C "$rootfs" -cf "$d/rootfs.tar" .
  export CUSTODY_TEST_IMAGE="custody-test/busybox:1"
  export CUSTODY_TEST_CTR_IMAGE="docker.io/custody-test/busybox:1"
  DOCKER_HOST="$CUSTODY_TEST_DOCKER_HOST" /usr/bin/docker import "$d/rootfs.tar" "$CUSTODY_TEST_IMAGE" >/dev/null
  DOCKER_HOST="$CUSTODY_TEST_DOCKER_HOST" /usr/bin/docker save "$CUSTODY_TEST_IMAGE" >"$d/image.tar"
  ctr -a "$d/containerd.sock" -n k8s.io images import "$d/image.tar" >/dev/null
  export CUSTODY_TEST_CONTAINERD_ROOT="$d/containerd"
  export CUSTODY_TEST_CONTAINERD_STATE="$d/containerd-state"
  export CUSTODY_TEST_CONTAINERD_SOCK="$d/containerd.sock"
  export CUSTODY_TEST_DOCKER_ROOT="$d/docker"
  echo "runtimes: containerd and dockerd under $d" >&2
}
