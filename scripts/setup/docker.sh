#!/usr/bin/env bash
# Make sure a Docker daemon answers `docker info`; start /usr/sbin/dockerd if not.
# The daemon is started in its own session so it outlives the caller (e.g. make).
set -euo pipefail
MLCD_SETUP_NAME=docker
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

DOCKERD=${MLCD_DOCKERD:-/usr/sbin/dockerd}
TIMEOUT=30

command -v docker >/dev/null 2>&1 ||
	die 3 "no docker client on PATH; install it: sudo bash scripts/setup/apt.sh (package docker.io)"

if docker info >/dev/null 2>&1; then
	say "ok (daemon already running)"
	exit 0
fi

[[ -x $DOCKERD ]] ||
	die 3 "$DOCKERD not found; install it: sudo bash scripts/setup/apt.sh (package docker.io)"
is_root ||
	die 3 "docker daemon not reachable and only root can start it: run sudo bash $0 (or add your user to the docker group if a daemon runs)"

with_lock docker
if docker info >/dev/null 2>&1; then
	say "ok (started by a concurrent run)"
	exit 0
fi

log=/var/log/mlcd-dockerd.log
{ : >>"$log"; } 2>/dev/null || log=${TMPDIR:-/tmp}/mlcd-dockerd.log
say "starting $DOCKERD (log: $log)"
printf '\n=== %s mlcd setup starts dockerd ===\n' "$(date -Is)" >>"$log"
# The daemon must not inherit the lock's file descriptor (it would hold the lock forever).
setsid nohup "$DOCKERD" >>"$log" 2>&1 </dev/null {MLCD_LOCK_FD}>&- &
pid=$!

deadline=$((SECONDS + TIMEOUT))
until docker info >/dev/null 2>&1; do
	if ! kill -0 "$pid" 2>/dev/null; then
		tail -n 15 "$log" >&2
		die 1 "dockerd exited during start-up; see $log"
	fi
	((SECONDS < deadline)) || {
		tail -n 15 "$log" >&2
		die 1 "dockerd (pid $pid) did not answer 'docker info' within ${TIMEOUT}s; see $log"
	}
	sleep 0.2
done
say "dockerd ready (pid $pid)"
