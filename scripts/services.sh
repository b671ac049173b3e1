#!/usr/bin/env bash
# Start the services image tasks and image tests use: a Docker engine (Debian's docker.io 20.10)
# and an OCI registry (Debian's docker-registry) on 127.0.0.1:5000. Nothing listens beyond
# loopback: dockerd gets only its unix socket, the registry only 127.0.0.1.
#
#   scripts/services.sh [start]   install what is missing (apt), start what is not running
#   scripts/services.sh status    say what answers
#   scripts/services.sh stop      stop what this script started (by the PIDs it recorded)
#
# Idempotent: a service that already answers is left alone (and never stopped by `stop`).
# Environment: KILN_SERVICES_DIR (state, logs, registry storage; default /var/lib/kiln-services),
# KILN_REGISTRY_ADDR (default 127.0.0.1:5000; must be a loopback address).
set -euo pipefail

STATE=${KILN_SERVICES_DIR:-/var/lib/kiln-services}
REGISTRY_ADDR=${KILN_REGISTRY_ADDR:-127.0.0.1:5000}
SOCKET=/var/run/docker.sock

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case "${REGISTRY_ADDR%:*}" in
  127.*|localhost|'[::1]') ;;
  *) die "KILN_REGISTRY_ADDR=$REGISTRY_ADDR is not a loopback address; refusing to listen on it" ;;
esac

engine_up() {
  # No curl dependency: python is always there (the venv's or the system's).
  python3 - "$SOCKET" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
try:
    s.connect(sys.argv[1])
    s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    sys.exit(0 if b"OK" in s.recv(4096) else 1)
except OSError:
    sys.exit(1)
EOF
}

registry_up() {
  python3 - "$REGISTRY_ADDR" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

wait_for() {  # wait_for CHECK SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    "$1" && return 0
    sleep 0.1
  done
  return 1
}

install_missing() {
  local missing=()
  [[ -x /usr/sbin/dockerd ]] || missing+=(docker.io)
  [[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]} (apt)"
  # policy-rc.d 101: packages must not start their services (they would listen on all
  # interfaces with the packaged config); this script starts them, on loopback.
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -n $added_policy ]] && rm -f "$policy"
  return 0
}

start_engine() {
  if engine_up; then say "docker engine: already answering on $SOCKET"; return; fi
  mkdir -p "$STATE"
  # No TCP listener, no iptables rules, no bridge: image builds need none of them.
  /usr/sbin/dockerd --host "unix://$SOCKET" --iptables=false --bridge=none \
    >>"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  wait_for engine_up 30 || die "dockerd did not answer within 30 s (log: $STATE/dockerd.log)"
  say "docker engine: started (pid $(cat "$STATE/dockerd.pid"), unix://$SOCKET)"
}

start_registry() {
  if registry_up; then say "registry: already answering on $REGISTRY_ADDR"; return; fi
  mkdir -p "$STATE/registry"
  cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
  /usr/bin/docker-registry serve "$STATE/registry.yml" >>"$STATE/registry.log" 2>&1 &
  echo $! >"$STATE/registry.pid"
  wait_for registry_up 15 || die "docker-registry did not answer within 15 s (log: $STATE/registry.log)"
  say "registry: started (pid $(cat "$STATE/registry.pid"), http://$REGISTRY_ADDR)"
}

stop_one() {  # stop_one NAME: only a process this script started, by its recorded PID
  local pidfile="$STATE/$1.pid" pid
  [[ -f $pidfile ]] || { say "$1: not started by this script"; return 0; }
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && grep -q "$1" "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "$1: stopped (pid $pid)"
  fi
  rm -f "$pidfile"
}

case "${1:-start}" in
  start)
    [[ $EUID -eq 0 ]] || die "run as root (dockerd needs it)"
    install_missing
    start_engine
    start_registry
    echo "export DOCKER_HOST=unix://$SOCKET KILN_REGISTRY=$REGISTRY_ADDR"
    ;;
  status)
    engine_up && say "docker engine: up ($SOCKET)" || say "docker engine: down"
    registry_up && say "registry: up ($REGISTRY_ADDR)" || say "registry: down"
    ;;
  stop)
    stop_one registry
    stop_one dockerd
    ;;
  *) die "usage: $0 [start|status|stop]" ;;
esac
