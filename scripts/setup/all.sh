#!/usr/bin/env bash
# The one setup entry point (make demo / make test call it): Debian packages,
# Docker daemon, local base image, local registry — in that order. Idempotent.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
for step in apt docker base-image registry; do
	bash "$here/$step.sh"
done
