#!/usr/bin/env bash
# A local Redis Cluster for the tests, on loopback: three primaries and three replicas, six
# `redis-server` processes on free ports (each with its cluster bus on port + 10000).
#
#   scripts/redis-cluster.sh start DIR   starts it, waits for `cluster_state:ok` on every node,
#                                        prints its URL (redis+cluster://...) on stdout
#   scripts/redis-cluster.sh stop DIR    stops the servers `start DIR` started (their pid files)
#
# scripts/test.sh starts one, exports CACHIER_TEST_REDIS_CLUSTER_URL and stops it on exit.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
ACTION=$1
DIR=$2

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
bindable() { python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }

stop() {
  for pidfile in "$DIR"/*/redis.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    # Only a redis-server this script started: the pid file's process, if it is still one.
    if [ -n "$pid" ] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

start() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    echo "redis-server and redis-cli are needed (apt-get install redis-server)" >&2
    exit 1
  }
  stop
  rm -rf "$DIR"
  mkdir -p "$DIR"
  # Six ports that can be bound, with their bus ports (+10000), all below the kernel's
  # ephemeral range: a port in that range can be taken at any moment by an outgoing connection.
  ephemeral_low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
  ports=()
  port=$((ephemeral_low - 12000))
  while [ "${#ports[@]}" -lt 6 ]; do
    [ $((port + 10000)) -lt "$ephemeral_low" ] || { echo "no free ports for the cluster" >&2; exit 1; }
    if bindable "$port" && bindable $((port + 10000)); then ports+=("$port"); fi
    port=$((port + 1))
  done
  for port in "${ports[@]}"; do
    mkdir -p "$DIR/$port"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --pidfile "$DIR/$port/redis.pid" --logfile "$DIR/$port/redis.log" --dir "$DIR/$port" \
      --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.05; done
    port_open "$port" || { echo "redis-server did not open 127.0.0.1:$port" >&2; cat "$DIR/$port/redis.log" >&2; exit 1; }
  done
  nodes=()
  for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 || {
    cat "$DIR/create.log" >&2
    exit 1
  }
  # Every node agrees the cluster is up (all slots served) before a test may use it.
  for _ in $(seq 1 200); do
    ok=1
    for port in "${ports[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || { ok=0; break; }
    done
    [ "$ok" = 1 ] && break
    sleep 0.05
  done
  [ "$ok" = 1 ] || { echo "the cluster did not reach cluster_state:ok" >&2; exit 1; }
  echo "redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}/"
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
