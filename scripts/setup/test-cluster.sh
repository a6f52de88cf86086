#!/usr/bin/env bash
# A three-node Docker Swarm on this machine for the `target: swarm` tests (docs/deploy.md):
# three network namespaces on one bridge (mlcdsw0), each with its own Docker engine (and its
# own hostname: mlcd-sw1, mlcd-sw2, mlcd-sw3); the first is the manager and runs Debian's
# openssh-server with its own host key, like the single test host (test-host.sh); the other
# two join as workers. Each node carries the label mlcd.node=sw1|sw2|sw3. The local registry
# (127.0.0.1:5000) is forwarded into every namespace by socat, so the same image name pulls
# on every node. Docker's FORWARD policy (DROP) would drop the traffic between namespaces:
# one rule in DOCKER-USER lets the bridge through, and `down` removes it.
#
#   bash scripts/setup/test-cluster.sh        set it up (idempotent; instant when it runs)
#   bash scripts/setup/test-cluster.sh down   tear it down (only what this script made)
#
# What the tests need is written to $DIR/env (MLCD_TEST_CLUSTER, MLCD_TEST_CLUSTER_KEY, …).
# Only the namespaces' addresses are ever targets of test traffic.
set -euo pipefail
MLCD_SETUP_NAME=test-cluster
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

DIR=${MLCD_TEST_CLUSTER_DIR:-/var/lib/mlcd-testcluster}
RUN=${MLCD_TEST_CLUSTER_RUN:-/run/mlcd-tc} # exec-roots: short (containerd's socket path limit)
BRIDGE=mlcdsw0
PREFIX=${MLCD_TEST_CLUSTER_NET:-10.231.78}
BRIDGE_ADDR=$PREFIX.1
POOL=${MLCD_TEST_CLUSTER_POOL:-10.232.0.0/16} # the swarm's overlay subnets
REGISTRY_PORT=${MLCD_REGISTRY_PORT:-5000}
NODES=(1 2 3)
DOCKER=/usr/bin/docker # Debian's client for swarm commands (ENVIRONMENT.md)

ns() { echo "mlcd-sw$1"; }
addr() { echo "$PREFIX.$((10 + $1))"; }
node_dir() { echo "$DIR/node$1"; }
sock() { echo "$DIR/node$1/docker.sock"; }
dk() {
	local n=$1
	shift
	DOCKER_HOST=unix://$(sock "$n") "$DOCKER" "$@"
}

forward_rule() { iptables "$1" DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT; }

down() {
	say "tearing down the test cluster"
	local n d
	for n in 3 2 1; do
		d=$(node_dir "$n")
		stop_pidfile "$d/socat.pid" socat
		stop_pidfile "$d/dockerd.pid" dockerd 30 # a dockerd in swarm mode takes seconds to stop
	done
	stop_pidfile "$DIR/ssh/sshd.pid" sshd
	stop_pidfile "$DIR/socat-host.pid" socat
	for n in "${NODES[@]}"; do
		d=$(node_dir "$n")
		for _ in $(seq 50); do
			pgrep -f "containerd.*$RUN/$n" >/dev/null 2>&1 || break
			sleep 0.1
		done
		# the swarm goes with the engines (the next `up` makes a new one); images stay
		rm -rf "$d/data/swarm"
		if mountpoint -q "$d/data" 2>/dev/null; then umount "$d/data" 2>/dev/null || true; fi
		ip link del "mlcdsw${n}h" 2>/dev/null || true
		ip netns del "$(ns "$n")" 2>/dev/null || true
	done
	ip link del "$BRIDGE" 2>/dev/null || true
	while forward_rule -C 2>/dev/null; do forward_rule -D 2>/dev/null || break; done
	# an engine that was killed (the node-death test) leaves its namespaces' mounts behind
	awk -v run="$RUN/" 'index($2, run) == 1 {print $2}' /proc/mounts | sort -r |
		while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
	rm -rf "$RUN" "$DIR/env"
	say "down (kept the nodes' images under $DIR/node*/data; rm -rf $DIR to drop them)"
}

if [[ ${1:-up} == down ]]; then
	is_root || die 3 "the test cluster is torn down as root: sudo bash $0 down"
	down
	exit 0
fi

ready_nodes() { dk 1 node ls --format '{{.Status}} {{.Availability}}' 2>/dev/null | grep -c '^Ready Active' || true; }

up_already() {
	local n
	for n in "${NODES[@]}"; do
		[[ -e /var/run/netns/$(ns "$n") ]] && alive "$(node_dir "$n")/dockerd.pid" &&
			alive "$(node_dir "$n")/socat.pid" || return 1
	done
	alive "$DIR/ssh/sshd.pid" && alive "$DIR/socat-host.pid" && [[ -f $DIR/env ]] &&
		forward_rule -C 2>/dev/null && [[ $(ready_nodes) == "${#NODES[@]}" ]]
}

if up_already; then
	say "ok (already up: ssh://root@$(addr 1), see $DIR/env)"
	exit 0
fi
is_root || die 3 "the test cluster needs root (network namespaces, dockerd, sshd): sudo bash $0"
for program in ip nsenter unshare socat iptables /usr/sbin/sshd ssh ssh-keygen /usr/sbin/dockerd "$DOCKER"; do
	command -v "$program" >/dev/null 2>&1 ||
		die 3 "$program is missing: sudo bash scripts/setup/apt.sh (openssh-server, socat, iproute2, docker.io)"
done
iptables -L DOCKER-USER -n >/dev/null 2>&1 ||
	die 3 "no DOCKER-USER chain: start this machine's Docker engine first (bash scripts/setup/docker.sh)"
with_lock test-cluster
if up_already; then
	say "ok (set up by a concurrent run)"
	exit 0
fi

mkdir -p "$DIR/ssh" "$DIR/client" "$RUN"
chmod 0700 "$DIR/ssh" "$DIR/client"

# 1. the bridge, the namespaces on it, and the FORWARD rule between them
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
	say "bridge $BRIDGE ($BRIDGE_ADDR/24)"
	ip link add "$BRIDGE" type bridge
	ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
fi
forward_rule -C 2>/dev/null || forward_rule -I
for n in "${NODES[@]}"; do
	name=$(ns "$n")
	[[ -e /var/run/netns/$name ]] || ip netns add "$name"
	if ! ip link show "mlcdsw${n}h" >/dev/null 2>&1; then
		say "namespace $name ($(addr "$n"))"
		ip link add "mlcdsw${n}h" type veth peer name "mlcdsw${n}n"
		ip link set "mlcdsw${n}n" netns "$name"
		ip link set "mlcdsw${n}h" master "$BRIDGE" up
		ip netns exec "$name" ip addr add "$(addr "$n")/24" dev "mlcdsw${n}n"
		ip netns exec "$name" ip link set "mlcdsw${n}n" up
		ip netns exec "$name" ip link set lo up
		ip netns exec "$name" ip route add default via "$BRIDGE_ADDR"
	fi
done

# 2. the registry, reachable as 127.0.0.1:$REGISTRY_PORT inside every namespace
if ! alive "$DIR/socat-host.pid"; then
	setsid socat "TCP-LISTEN:$REGISTRY_PORT,bind=$BRIDGE_ADDR,fork,reuseaddr" \
		"TCP:127.0.0.1:$REGISTRY_PORT" </dev/null >>"$DIR/socat.log" 2>&1 {MLCD_LOCK_FD}>&- &
	echo $! >"$DIR/socat-host.pid"
fi
for n in "${NODES[@]}"; do
	d=$(node_dir "$n")
	mkdir -p "$d/data"
	if ! alive "$d/socat.pid"; then
		setsid nsenter --net="/var/run/netns/$(ns "$n")" socat \
			"TCP-LISTEN:$REGISTRY_PORT,bind=127.0.0.1,fork,reuseaddr" "TCP:$BRIDGE_ADDR:$REGISTRY_PORT" \
			</dev/null >>"$DIR/socat.log" 2>&1 {MLCD_LOCK_FD}>&- &
		echo $! >"$d/socat.pid"
	fi
done

# 3. an engine per namespace, each with a hostname of its own (a UTS namespace), so that
# `node.hostname==mlcd-sw2` tells the nodes apart (nsenter, not `ip netns exec`: that
# remounts /sys)
for n in "${NODES[@]}"; do
	d=$(node_dir "$n")
	alive "$d/dockerd.pid" && continue
	say "dockerd on $(ns "$n") (socket $(sock "$n"), log $d/dockerd.log)"
	rm -f "$(sock "$n")"
	mkdir -p "$RUN/$n"
	setsid nsenter --net="/var/run/netns/$(ns "$n")" unshare --uts sh -c \
		"hostname $(ns "$n") && exec /usr/sbin/dockerd --data-root $d/data --exec-root $RUN/$n \
		--pidfile $d/dockerd.pid -H unix://$(sock "$n") --bip 172.31.$((250 + n)).1/24" \
		</dev/null >>"$d/dockerd.log" 2>&1 {MLCD_LOCK_FD}>&- &
done
for n in "${NODES[@]}"; do
	deadline=$((SECONDS + 60))
	until dk "$n" info >/dev/null 2>&1; do
		((SECONDS < deadline)) || {
			tail -n 15 "$(node_dir "$n")/dockerd.log" >&2
			die 1 "the dockerd of node $n did not answer within 60 s; see $(node_dir "$n")/dockerd.log"
		}
		sleep 0.2
	done
done

# 4. the swarm: node 1 the manager, 2 and 3 workers; a label per node
swarm_state() { dk "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true; }
if [[ $(swarm_state 1) != active ]]; then
	say "swarm init on $(addr 1)"
	dk 1 swarm init --advertise-addr "$(addr 1)" --default-addr-pool "$POOL" >/dev/null
fi
token=$(dk 1 swarm join-token -q worker)
for n in 2 3; do
	state=$(swarm_state "$n")
	if [[ $state != active ]]; then
		[[ $state == inactive ]] || dk "$n" swarm leave --force >/dev/null 2>&1 || true
		say "node $n joins"
		dk "$n" swarm join --advertise-addr "$(addr "$n")" --token "$token" "$(addr 1):2377" >/dev/null
	fi
done
# nodes of an earlier swarm that left (down, then up) linger as Down: drop them
mapfile -t gone < <(dk 1 node ls --format '{{.ID}} {{.Status}}' | awk '$2 == "Down" {print $1}')
((${#gone[@]} == 0)) || dk 1 node rm --force "${gone[@]}" >/dev/null 2>&1 || true
deadline=$((SECONDS + 60))
until [[ $(ready_nodes) == "${#NODES[@]}" ]]; do
	((SECONDS < deadline)) || die 1 "the swarm has $(ready_nodes) ready nodes of ${#NODES[@]} after 60 s"
	sleep 0.5
done
for n in "${NODES[@]}"; do
	id=$(dk "$n" info --format '{{.Swarm.NodeID}}')
	dk 1 node update --label-add "mlcd.node=sw$n" "$id" >/dev/null
done

# 5. sshd on the manager with its own host key; sessions talk to the manager's engine
start_sshd "$DIR" "$(addr 1)" "/var/run/netns/$(ns 1)" "$(sock 1)" mlcd-testcluster

{
	echo "MLCD_TEST_CLUSTER=ssh://root@$(addr 1)"
	echo "MLCD_TEST_CLUSTER_KEY=$DIR/client/id_ed25519"
	echo "MLCD_TEST_CLUSTER_KNOWN_HOSTS=$DIR/client/known_hosts"
	echo "MLCD_TEST_CLUSTER_NODES=$(for n in "${NODES[@]}"; do printf '%s ' "$(addr "$n")"; done | sed 's/ $//')"
	for n in "${NODES[@]}"; do
		echo "MLCD_TEST_CLUSTER_ADDR_$n=$(addr "$n")"
		echo "MLCD_TEST_CLUSTER_DOCKER_$n=unix://$(sock "$n")"
		echo "MLCD_TEST_CLUSTER_PIDFILE_$n=$(node_dir "$n")/dockerd.pid"
	done
} >"$DIR/env"
say "up: ssh://root@$(addr 1), $(ready_nodes) nodes ready (details in $DIR/env)"
