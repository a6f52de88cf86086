#!/usr/bin/env bash
# Make sure the local base image (Debian bookworm + python3 + venv) exists.
# Docker Hub cannot be reached, so the image is made with debootstrap + docker import.
# The filtered rootfs tarball is cached, so re-importing after `docker system prune` is quick.
set -euo pipefail
MLCD_SETUP_NAME=base-image
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

IMAGE=${MLCD_BASE_IMAGE:-local/python:3.11-bookworm}
SUITE=bookworm
MIRROR=${MLCD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv
CACHE=${MLCD_CACHE:-${HOME:-/tmp}/.cache/mlcd}
TARBALL="$CACHE/rootfs-$SUITE-minbase-python3-venv.tar"

command -v docker >/dev/null 2>&1 ||
	die 3 "no docker client on PATH; run: sudo bash scripts/setup/apt.sh"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	say "ok ($IMAGE already present)"
	exit 0
fi
docker info >/dev/null 2>&1 ||
	die 3 "docker daemon not reachable; run: sudo bash scripts/setup/docker.sh"

mkdir -p "$CACHE"
with_lock base-image
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	say "ok ($IMAGE made by a concurrent run)"
	exit 0
fi

rootfs=
cleanup() {
	[[ -n $rootfs && -d $rootfs ]] || return 0
	# debootstrap may leave proc/sys mounted when it fails: never recurse into them.
	local m
	for m in dev/pts dev sys proc; do
		mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" 2>/dev/null
	done
	rm -rf --one-file-system "$rootfs"
	rm -f "$TARBALL.part"
}
trap cleanup EXIT

if [[ ! -s $TARBALL ]]; then
	command -v debootstrap >/dev/null 2>&1 ||
		die 3 "debootstrap not found; run: sudo bash scripts/setup/apt.sh"
	is_root ||
		die 3 "building $IMAGE needs root (debootstrap); run: sudo bash $0"
	rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
	say "debootstrap $SUITE ($INCLUDE) from $MIRROR (~35 s; log: $CACHE/debootstrap.log)"
	start=$SECONDS
	if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" \
		>"$CACHE/debootstrap.log" 2>&1; then
		tail -n 15 "$CACHE/debootstrap.log" >&2
		die 3 "debootstrap failed (log: $CACHE/debootstrap.log); the Debian mirror $MIRROR must be reachable (MLCD_DEBIAN_MIRROR picks another)"
	fi
	say "debootstrap done in $((SECONDS - start)) s; packing $TARBALL"
	tar -C "$rootfs" -c \
		--exclude='./var/cache/apt/archives/*.deb' \
		--exclude='./var/lib/apt/lists/*' \
		--exclude='./usr/share/doc' \
		--exclude='./usr/share/man' \
		--exclude='./usr/share/locale' \
		-f "$TARBALL.part" .
	mv "$TARBALL.part" "$TARBALL"
	cleanup
	rootfs=
else
	say "using cached rootfs $TARBALL"
fi

say "docker import -> $IMAGE"
docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'CMD ["python3"]' \
	--message "mlcd: debootstrap --variant=minbase --include=$INCLUDE $SUITE" \
	"$TARBALL" "$IMAGE" >/dev/null

if ! version=$(docker run --rm --network none "$IMAGE" python3 -c 'import sys, venv; print(sys.version.split()[0])' 2>&1); then
	docker image rm "$IMAGE" >/dev/null 2>&1 || true
	rm -f "$TARBALL"
	die 1 "the imported image does not run python3 ($version); removed it and the cached rootfs, run again to rebuild"
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "$IMAGE ready (python $version, $((size / 1000000)) MB)"
