#!/usr/bin/env bash
# The test suite as two pytest processes side by side (make test, make integration): CI
# takes as long as the longer lane instead of the sum of both.
#
#   bash scripts/test-lanes.sh PYTHON MARKEXPR PATH... [-- PYTEST_ARGS...]
#
#   lane main:   PYTHON -m pytest PATH... -m '(MARKEXPR) and not (apart or unit)'
#                its output live
#   lane apart:  PYTHON -m pytest PATH... -m '(MARKEXPR) and (apart or unit)'
#                its output in a log file, printed when both lanes are done; on a test host
#                of its own (scripts/setup/test-host-apart.env), set up first, torn down after
#
# The lane apart holds the tests marked apart (`pytestmark = pytest.mark.apart`): long tests
# that share no session fixture with the others and must not meet what the others do to the
# shared test host (the drill restarts its engine); today the github.com rehearsal. The unit
# tests (CPU only, no host, no fixture shared with the integration tests) go there too, so
# that the two lanes take about as long. Both lanes must pass: any exit code but 0 fails the
# run, 5 (no test selected) too. An empty MARKEXPR selects every test; PYTEST_ARGS go to both
# lanes. MLCD_LANES=1 runs one pytest process over everything instead, on the first test host.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { printf '[lanes] %s\n' "$*"; }

if (($# < 3)); then
	printf '[lanes] usage: %s PYTHON MARKEXPR PATH... [-- PYTEST_ARGS...]\n' "$0" >&2
	exit 2
fi
py=$1 expr=$2
shift 2
paths=()
while (($#)) && [[ $1 != -- ]]; do
	paths+=("$1")
	shift
done
(($#)) && shift
args=("$@")

# the -m expression of MARKEXPR and one more condition
select_() { if [[ -n $expr ]]; then printf '(%s) and %s' "$expr" "$1"; else printf '%s' "$1"; fi; }

if [[ ${MLCD_LANES:-2} == 1 ]]; then
	if [[ -n $expr ]]; then exec "$py" -m pytest "${paths[@]}" -m "$expr" "${args[@]}"; fi
	exec "$py" -m pytest "${paths[@]}" "${args[@]}"
fi

apart_expr='apart or unit'
# each lane's slowest tests, to see where CI's time goes (PYTEST_ARGS may say otherwise)
durations=(--durations=15)
host_env=$here/setup/test-host-apart.env
log=$(mktemp --suffix=.log "${TMPDIR:-/tmp}/mlcd-lane-apart.XXXXXX")

in_apart_env() { # in_apart_env CMD...: CMD with the variables of the lane apart's test host
	(
		set -a
		# shellcheck source=setup/test-host-apart.env source-path=SCRIPTDIR
		. "$host_env"
		set +a
		exec "$@"
	)
}

# Every run holds a shared lock on the host while it uses it; the last one out tears it down
# (two runs on one machine: the first to finish must not remove the other's host).
users_lock=${MLCD_LOCK_DIR:-${TMPDIR:-/tmp}}/mlcd-setup-test-host-apart-users.lock
down_if_last() {
	local fd
	exec {fd}>>"$users_lock"
	if flock -n -x "$fd"; then
		in_apart_env bash "$here/setup/test-host.sh" down
	else
		say "the lane apart's test host is still used by another run: left up"
	fi
	exec {fd}>&-
}

apart() {
	local rc=0 start=$SECONDS users
	exec {users}>>"$users_lock"
	flock -s "$users"
	# (the daemons test-host.sh starts must not inherit the lock: they would hold it forever)
	if in_apart_env bash "$here/setup/test-host.sh" {users}>&- &&
		bash "$here/setup/router-image.sh" {users}>&-; then
		# its own cache folder: the two lanes would overwrite each other's last failures
		in_apart_env "$py" -m pytest "${paths[@]}" -m "$(select_ "($apart_expr)")" \
			-o cache_dir=.pytest_cache/apart "${durations[@]}" "${args[@]}" || rc=$?
	else
		rc=3
		say "the lane apart's test host did not come up (above)"
	fi
	exec {users}>&-
	down_if_last || true
	say "lane apart took $((SECONDS - start)) s"
	return "$rc"
}

# the lane apart in a process group of its own, so that an interrupt stops all of it
set -m
apart </dev/null >"$log" 2>&1 &
apart_pid=$!
set +m
say "lane apart: -m '$(select_ "($apart_expr)")' in the background, on a test host of its own (log: $log)"

# shellcheck disable=SC2317 # a trap
stop_apart() {
	kill -TERM -- "-$apart_pid" 2>/dev/null
	wait "$apart_pid" 2>/dev/null
	down_if_last >>"$log" 2>&1
	say "interrupted; the lane apart's log: $log"
	exit 130
}
trap stop_apart INT TERM

main_rc=0 start=$SECONDS
"$py" -m pytest "${paths[@]}" -m "$(select_ "not ($apart_expr)")" "${durations[@]}" "${args[@]}" ||
	main_rc=$?
say "lane main took $((SECONDS - start)) s"
if kill -0 "$apart_pid" 2>/dev/null; then
	say "lane main exited $main_rc; waiting for the lane apart (log: $log)"
fi
apart_rc=0
wait "$apart_pid" || apart_rc=$?
trap - INT TERM

echo
say "===== lane apart: -m '$(select_ "($apart_expr)")', exit $apart_rc (log: $log) ====="
cat "$log"
say "===== lane main exit $main_rc, lane apart exit $apart_rc ====="
((main_rc != 0)) && exit "$main_rc"
exit "$apart_rc"
