# shellcheck shell=bash
# Helpers shared by the scripts in scripts/setup/ (sourced, not run).
# Every script prints one short line per action, prefixed with its name.

MLCD_SETUP_NAME=${MLCD_SETUP_NAME:-$(basename "${BASH_SOURCE[1]:-setup}" .sh)}

say() { printf '[setup/%s] %s\n' "$MLCD_SETUP_NAME" "$*"; }

# die CODE MESSAGE...: print to stderr and exit with CODE.
# Code 3 means "the environment lacks something this script cannot fix itself".
die() {
	local code=$1
	shift
	printf '[setup/%s] ERROR: %s\n' "$MLCD_SETUP_NAME" "$*" >&2
	exit "$code"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# with_lock NAME: serialise the slow path of a script between concurrent runs
# (several engineers / make targets may call all.sh at the same time).
# Holds the lock until the calling script exits.
with_lock() {
	local dir=${MLCD_LOCK_DIR:-${TMPDIR:-/tmp}}
	local file="$dir/mlcd-setup-$1.lock"
	exec {MLCD_LOCK_FD}>>"$file" || die 1 "cannot open lock file $file"
	if ! flock -n "$MLCD_LOCK_FD"; then
		say "waiting for another setup run ($file)"
		flock "$MLCD_LOCK_FD"
	fi
}
