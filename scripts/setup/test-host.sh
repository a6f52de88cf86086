#!/usr/bin/env bash
# A second host on this machine for the docker-host deploy tests (docs/deploy.md):
# a network namespace with its own address, its own Docker engine, Debian's openssh-server
# with its own host key, and the local registry (127.0.0.1:5000) forwarded into it by socat,
# so that `DOCKER_HOST=ssh://root@ADDR docker pull 127.0.0.1:5000/NAME@sha256:…` works there.
#
#   bash scripts/setup/test-host.sh        set it up (idempotent; instant when it runs)
#   bash scripts/setup/test-host.sh down   tear it down (only what this script made)
#
# What the tests need is written to $DIR/env (MLCD_TEST_HOST, MLCD_TEST_HOST_KEY, …).
# Only the namespace's address is ever a target of test traffic. The MLCD_TEST_HOST_*
# variables below make another such host beside it (scripts/setup/test-host-apart.env: the
# one of the test lane `apart`, scripts/test-lanes.sh); each host has its own lock.
set -euo pipefail
MLCD_SETUP_NAME=test-host
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

NS=${MLCD_TEST_HOST_NS:-mlcd-testhost}
DIR=${MLCD_TEST_HOST_DIR:-/var/lib/mlcd-testhost}
RUN=${MLCD_TEST_HOST_RUN:-/run/mlcd-th} # exec-root: short (containerd's socket path limit)
IF=${MLCD_TEST_HOST_IF:-mlcdth} # the veth pair: ${IF}0 here, ${IF}1 in the namespace
HOST_IF=${IF}0
NS_IF=${IF}1
HOST_ADDR=${MLCD_TEST_HOST_GATEWAY:-10.231.77.1}
NS_ADDR=${MLCD_TEST_HOST_ADDR:-10.231.77.2}
BIP=${MLCD_TEST_HOST_BIP:-172.31.250.1/24}
REGISTRY_PORT=${MLCD_REGISTRY_PORT:-5000}
NETNS=/var/run/netns/$NS
SOCK=$DIR/docker.sock

down() {
	say "tearing down $NS"
	if [[ -S $SOCK ]] && DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; then
		# everything on the test host's engine belongs to the tests
		mapfile -t ids < <(DOCKER_HOST=unix://$SOCK docker ps -aq)
		((${#ids[@]} == 0)) || DOCKER_HOST=unix://$SOCK docker rm -f "${ids[@]}" >/dev/null 2>&1 || true
	fi
	stop_pidfile "$DIR/socat-ns.pid" socat
	stop_pidfile "$DIR/socat-host.pid" socat
	stop_pidfile "$DIR/ssh/sshd.pid" sshd
	stop_pidfile "$DIR/dockerd.pid" dockerd
	# dockerd leaves its own containerd running for a moment
	for _ in $(seq 50); do
		pgrep -f "containerd.*$RUN" >/dev/null 2>&1 || break
		sleep 0.1
	done
	if mountpoint -q "$DIR/data" 2>/dev/null; then umount "$DIR/data" 2>/dev/null || true; fi
	ip link del "$HOST_IF" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$RUN" "$DIR/env"
	say "down (kept $DIR/data: images pulled there are reused next time; rm -rf $DIR to drop it)"
}

if [[ ${1:-up} == down ]]; then
	is_root || die 3 "the test host is torn down as root: sudo bash $0 down"
	down
	exit 0
fi

up_already() {
	[[ -e $NETNS ]] && alive "$DIR/dockerd.pid" && alive "$DIR/ssh/sshd.pid" &&
		alive "$DIR/socat-host.pid" && alive "$DIR/socat-ns.pid" && [[ -f $DIR/env ]] &&
		DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1
}

if up_already; then
	say "ok (already up: ssh://root@$NS_ADDR, see $DIR/env)"
	exit 0
fi
is_root || die 3 "the test host needs root (network namespace, dockerd, sshd): sudo bash $0"
for program in ip nsenter socat /usr/sbin/sshd ssh ssh-keygen ssh-keyscan /usr/sbin/dockerd; do
	command -v "$program" >/dev/null 2>&1 ||
		die 3 "$program is missing: sudo bash scripts/setup/apt.sh (openssh-server, socat, iproute2, docker.io)"
done
# the default host keeps the lock name older copies of this script use
if [[ $NS == mlcd-testhost ]]; then with_lock test-host; else with_lock "test-host-$NS"; fi
if up_already; then
	say "ok (set up by a concurrent run)"
	exit 0
fi

mkdir -p "$DIR/ssh" "$DIR/client" "$DIR/data" "$RUN"
chmod 0700 "$DIR/ssh" "$DIR/client"

# 1. the namespace and its address
if [[ ! -e $NETNS ]]; then
	say "network namespace $NS ($NS_ADDR), veth $HOST_IF <-> $NS_IF"
	ip netns add "$NS"
fi
if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
	ip link add "$HOST_IF" type veth peer name "$NS_IF"
	ip link set "$NS_IF" netns "$NS"
	ip addr add "$HOST_ADDR/30" dev "$HOST_IF"
	ip link set "$HOST_IF" up
	ip netns exec "$NS" ip addr add "$NS_ADDR/30" dev "$NS_IF"
	ip netns exec "$NS" ip link set "$NS_IF" up
	ip netns exec "$NS" ip link set lo up
	ip netns exec "$NS" ip route add default via "$HOST_ADDR"
fi

# 2. the registry, reachable as 127.0.0.1:$REGISTRY_PORT inside the namespace too
if ! alive "$DIR/socat-host.pid"; then
	setsid socat "TCP-LISTEN:$REGISTRY_PORT,bind=$HOST_ADDR,fork,reuseaddr" \
		"TCP:127.0.0.1:$REGISTRY_PORT" </dev/null >>"$DIR/socat.log" 2>&1 {MLCD_LOCK_FD}>&- &
	echo $! >"$DIR/socat-host.pid"
fi
if ! alive "$DIR/socat-ns.pid"; then
	setsid nsenter --net="$NETNS" socat "TCP-LISTEN:$REGISTRY_PORT,bind=127.0.0.1,fork,reuseaddr" \
		"TCP:$HOST_ADDR:$REGISTRY_PORT" </dev/null >>"$DIR/socat.log" 2>&1 {MLCD_LOCK_FD}>&- &
	echo $! >"$DIR/socat-ns.pid"
fi

# 3. its own Docker engine (nsenter, not `ip netns exec`: that remounts /sys)
if ! alive "$DIR/dockerd.pid"; then
	say "dockerd in $NS (socket $SOCK, log $DIR/dockerd.log)"
	rm -f "$SOCK"
	setsid nsenter --net="$NETNS" /usr/sbin/dockerd --data-root "$DIR/data" --exec-root "$RUN" \
		--pidfile "$DIR/dockerd.pid" -H "unix://$SOCK" --bip "$BIP" \
		</dev/null >>"$DIR/dockerd.log" 2>&1 {MLCD_LOCK_FD}>&- &
	deadline=$((SECONDS + 30))
	until DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; do
		((SECONDS < deadline)) || {
			tail -n 15 "$DIR/dockerd.log" >&2
			die 1 "the test host's dockerd did not answer within 30 s; see $DIR/dockerd.log"
		}
		sleep 0.2
	done
fi

# 4. sshd with its own host key; sessions talk to the engine above
start_sshd "$DIR" "$NS_ADDR" "$NETNS" "$SOCK" mlcd-testhost

cat >"$DIR/env" <<EOF
MLCD_TEST_HOST=ssh://root@$NS_ADDR
MLCD_TEST_HOST_ADDR=$NS_ADDR
MLCD_TEST_HOST_KEY=$DIR/client/id_ed25519
MLCD_TEST_HOST_KNOWN_HOSTS=$DIR/client/known_hosts
MLCD_TEST_HOST_DOCKER=unix://$SOCK
EOF
say "up: ssh://root@$NS_ADDR (engine $(DOCKER_HOST=unix://$SOCK docker version --format '{{.Server.Version}}'), details in $DIR/env)"
