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

# alive PIDFILE: the process of a pid file is running
alive() { [[ -f $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

# stop_pidfile FILE WHAT [WAIT]: stop the process of a pid file this script wrote, if it still
# is WHAT: TERM, then KILL after WAIT seconds (default 10)
stop_pidfile() {
	local file=$1 what=$2 wait=${3:-10} pid cmd
	[[ -f $file ]] || return 0
	pid=$(<"$file")
	if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
		if [[ $cmd == *"$what"* ]]; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq $((wait * 10))); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$file"
}

# start_sshd DIR ADDR NETNS SOCK NAME: an sshd in the network namespace NETNS on ADDR:22,
# with its own host key and a client key for the tests (DIR/ssh, DIR/client), whose
# sessions talk to the Docker engine at SOCK; writes DIR/client/known_hosts from the key
# file (not from the network). A running sshd is kept.
start_sshd() {
	local dir=$1 addr=$2 netns=$3 sock=$4 name=$5
	[[ -f $dir/ssh/host_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh/host_ed25519"
	[[ -f $dir/client/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C mlcd-tests -f "$dir/client/id_ed25519"
	cp "$dir/client/id_ed25519.pub" "$dir/ssh/authorized_keys"
	chmod 0600 "$dir/ssh/authorized_keys"
	cat >"$dir/ssh/sshd_config" <<EOF
ListenAddress $addr:22
HostKey $dir/ssh/host_ed25519
PidFile $dir/ssh/sshd.pid
AuthorizedKeysFile $dir/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
MaxSessions 100
MaxStartups 100:30:200
SetEnv DOCKER_HOST=unix://$sock
Subsystem sftp internal-sftp
EOF
	if ! alive "$dir/ssh/sshd.pid"; then
		say "sshd on $addr:22"
		mkdir -p /run/sshd
		nsenter --net="$netns" /usr/sbin/sshd -f "$dir/ssh/sshd_config" -E "$dir/ssh/sshd.log" {MLCD_LOCK_FD}>&-
		for _ in $(seq 50); do
			alive "$dir/ssh/sshd.pid" && break
			sleep 0.1
		done
		alive "$dir/ssh/sshd.pid" || die 1 "sshd did not start; see $dir/ssh/sshd.log"
	fi
	printf '%s %s\n' "$addr" "$(cut -d' ' -f1,2 "$dir/ssh/host_ed25519.pub")" >"$dir/client/known_hosts"
}
