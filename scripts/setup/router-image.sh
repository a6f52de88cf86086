#!/usr/bin/env bash
# The router image of the docker-host tests: Debian's nginx in the local base image, built
# with --network none (no image can be pulled here) and pushed to the local registry, so a
# remote engine pulls it like a release. Elsewhere `router.image` defaults to the official
# nginx image (docs/deploy.md). Idempotent: instant when the registry has it.
set -euo pipefail
MLCD_SETUP_NAME=router-image
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

BASE=${MLCD_BASE_IMAGE:-local/python:3.11-bookworm}
PORT=${MLCD_REGISTRY_PORT:-5000}
IMAGE=${MLCD_ROUTER_IMAGE:-127.0.0.1:$PORT/mlcd-router:nginx-bookworm}

repo=${IMAGE#*/}
if curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"http://127.0.0.1:$PORT/v2/${repo%:*}/manifests/${IMAGE##*:}" 2>/dev/null &&
	docker image inspect "$IMAGE" >/dev/null 2>&1; then
	say "ok ($IMAGE already in the registry)"
	exit 0
fi
docker image inspect "$BASE" >/dev/null 2>&1 ||
	die 3 "base image $BASE is missing: bash scripts/setup/base-image.sh"
with_lock router-image
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "downloading Debian's nginx packages"
(cd "$work" && apt-get download nginx nginx-common >/dev/null 2>"$work/apt.log") || {
	cat "$work/apt.log" >&2
	die 3 "apt-get download nginx failed (the Debian mirror must be reachable)"
}
mkdir "$work/root"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
# only usr, etc and var: a /lib of the package would replace the merged-usr symlink
find "$work/root" -mindepth 1 -maxdepth 1 ! -name usr ! -name etc ! -name var -exec rm -rf {} +
rm -rf "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work"/*.deb
cat >"$work/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY root/ /
RUN mkdir -p /var/lib/nginx /var/log/nginx && nginx -v
USER 65534:65534
ENTRYPOINT ["nginx"]
CMD ["-g", "daemon off;"]
DOCKERFILE
say "building $IMAGE from $BASE (--network none)"
docker build --quiet --network none -t "$IMAGE" "$work" >"$work/build.log" 2>&1 || {
	tail -n 15 "$work/build.log" >&2
	die 1 "docker build of $IMAGE failed"
}
docker push --quiet "$IMAGE" >/dev/null
say "pushed $IMAGE"
