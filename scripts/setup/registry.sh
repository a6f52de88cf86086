#!/usr/bin/env bash
# Make sure a Docker registry (Debian's docker-registry) answers on
# 127.0.0.1:$MLCD_REGISTRY_PORT (default 5000), storing under $MLCD_REGISTRY_DIR.
# Started detached, with a pid file that stop.sh uses.
set -euo pipefail
MLCD_SETUP_NAME=registry
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

PORT=${MLCD_REGISTRY_PORT:-5000}
DIR=${MLCD_REGISTRY_DIR:-/var/lib/mlcd-registry}
ADDR=127.0.0.1:$PORT
CONFIG=$DIR/registry-$PORT.yml
PIDFILE=$DIR/registry-$PORT.pid
LOG=$DIR/registry-$PORT.log
TIMEOUT=15

if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || ((PORT < 1 || PORT > 65535)); then
	die 3 "MLCD_REGISTRY_PORT=$PORT is not a TCP port number (1-65535)"
fi

# True when http://ADDR/v2/ answers like a Docker registry (API v2).
is_registry() {
	local headers
	headers=$(curl -sS -m 2 -o /dev/null -D - "http://$ADDR/v2/" 2>/dev/null) || return 1
	[[ ${headers,,} == *"docker-distribution-api-version: registry/2"* ]]
}

port_holder() { ss -Hltnp "sport = :$PORT" 2>/dev/null; }

if is_registry; then
	say "ok (registry already answers on $ADDR)"
	exit 0
fi

port_taken_exit() {
	die 3 "port $PORT is taken by something that is not a Docker registry:
$1
Stop it, or choose another port, e.g.: MLCD_REGISTRY_PORT=$((PORT < 65535 ? PORT + 1 : 5001)) make demo"
}
holder=$(port_holder)
[[ -z $holder ]] || port_taken_exit "$holder"

command -v docker-registry >/dev/null 2>&1 ||
	die 3 "docker-registry not found; run: sudo bash scripts/setup/apt.sh (package docker-registry)"
if ! mkdir -p "$DIR/storage" 2>/dev/null || [[ ! -w $DIR ]]; then
	die 3 "cannot write $DIR; run as root (sudo) or choose a writable folder: MLCD_REGISTRY_DIR=\$HOME/.cache/mlcd/registry"
fi

with_lock "registry-$PORT"
if is_registry; then
	say "ok (started by a concurrent run)"
	exit 0
fi
holder=$(port_holder)
[[ -z $holder ]] || port_taken_exit "$holder"

cat >"$CONFIG" <<CONF
# Written by scripts/setup/registry.sh (mlcd); rewritten on every start.
version: 0.1
log:
  level: info
  fields:
    service: mlcd-registry
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
CONF

say "starting docker-registry on $ADDR (storage: $DIR/storage, log: $LOG)"
# The daemon must not inherit the lock's file descriptor (it would hold the lock forever).
setsid nohup docker-registry serve "$CONFIG" >>"$LOG" 2>&1 </dev/null {MLCD_LOCK_FD}>&- &
pid=$!
echo "$pid" >"$PIDFILE"

deadline=$((SECONDS + TIMEOUT))
until is_registry; do
	if ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$PIDFILE"
		tail -n 10 "$LOG" >&2
		die 1 "docker-registry exited during start-up; see $LOG"
	fi
	((SECONDS < deadline)) || {
		tail -n 10 "$LOG" >&2
		die 1 "docker-registry (pid $pid) did not answer http://$ADDR/v2/ within ${TIMEOUT}s; see $LOG"
	}
	sleep 0.1
done
say "registry ready on $ADDR (pid $pid)"
