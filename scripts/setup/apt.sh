#!/usr/bin/env bash
# Install the Debian packages mlcd's demo and tests need. Instant when all are there.
set -euo pipefail
MLCD_SETUP_NAME=apt
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

PACKAGES=(docker.io docker-registry debootstrap busybox-static nginx wrk shellcheck
	chromium curl ca-certificates iproute2 procps prometheus)

# Print the packages of PACKAGES that are not fully installed (one dpkg-query call).
missing_packages() {
	local -A ok=()
	local name status
	while read -r name status; do
		[[ $status == "install ok installed" ]] && ok[${name%%:*}]=1
	done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
	for name in "${PACKAGES[@]}"; do
		[[ -n ${ok[$name]:-} ]] || printf '%s\n' "$name"
	done
}

command -v dpkg-query >/dev/null 2>&1 ||
	die 3 "dpkg-query not found: these scripts expect Debian 12 (bookworm); install the packages by hand: ${PACKAGES[*]}"

mapfile -t missing < <(missing_packages)
if ((${#missing[@]} == 0)); then
	say "ok (all ${#PACKAGES[@]} packages already installed)"
	exit 0
fi

is_root || die 3 "missing Debian packages: ${missing[*]}; run this as root: sudo bash $0"

with_lock apt
mapfile -t missing < <(missing_packages) # another run may have installed them meanwhile
if ((${#missing[@]} == 0)); then
	say "ok (installed by a concurrent run)"
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update (missing: ${missing[*]})"
# A third-party source that cannot be reached makes apt-get update fail although the
# Debian lists are fine; carry on and let apt-get install be the judge.
if ! apt-get update -qq >/tmp/mlcd-apt-update.log 2>&1 {MLCD_LOCK_FD}>&-; then
	say "apt-get update reported errors (see /tmp/mlcd-apt-update.log); trying the install anyway"
fi
say "apt-get install ${missing[*]}"
if ! apt-get install -y -qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 \
	"${missing[@]}" >/tmp/mlcd-apt-install.log 2>&1 {MLCD_LOCK_FD}>&-; then
	tail -n 20 /tmp/mlcd-apt-install.log >&2
	die 3 "apt-get install failed (last lines above, full log: /tmp/mlcd-apt-install.log); the Debian mirror must be reachable and the packages must exist in its lists (Debian 12 bookworm)"
fi
mapfile -t missing < <(missing_packages)
((${#missing[@]} == 0)) || die 1 "still missing after install: ${missing[*]}"
say "installed ${#PACKAGES[@]} packages"
