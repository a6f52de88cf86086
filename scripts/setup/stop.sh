#!/usr/bin/env bash
# Stop the registry that registry.sh started on $MLCD_REGISTRY_PORT (default 5000),
# and nothing else: the pid comes from registry.sh's pid file and must be docker-registry.
set -euo pipefail
MLCD_SETUP_NAME=stop
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

PORT=${MLCD_REGISTRY_PORT:-5000}
DIR=${MLCD_REGISTRY_DIR:-/var/lib/mlcd-registry}
PIDFILE=$DIR/registry-$PORT.pid

if [[ ! -f $PIDFILE ]]; then
	say "ok (no registry started by registry.sh on port $PORT)"
	exit 0
fi
pid=$(<"$PIDFILE")
if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
	rm -f "$PIDFILE"
	say "ok (registry on port $PORT was not running; removed stale pid file)"
	exit 0
fi
cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
if [[ $cmd != *docker-registry* ]]; then
	rm -f "$PIDFILE"
	say "ok (pid $pid is no registry: '$cmd'; left it alone, removed stale pid file)"
	exit 0
fi

say "stopping registry on port $PORT (pid $pid)"
kill -TERM "$pid"
for _ in $(seq 50); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
	say "registry did not stop after 5 s; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PIDFILE"
say "stopped"
