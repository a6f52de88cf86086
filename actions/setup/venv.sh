#!/usr/bin/env bash
# Print the virtualenv folder that actions/setup installs mlcd into: one per kit content
# (package source, pins), under the runner's tool cache. The stage actions find mlcd through
# it, so no job-wide PATH or environment file is written.
set -euo pipefail
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd -- "$here/../.." && pwd)"
kit="$(
	{
		cat "$root/pyproject.toml" "$root/constraints.txt" "$here/trivy-requirements.txt"
		find "$root/scripts/mlcd" -type f \( -name '*.py' -o -name '*.json' -o -name '*.typed' \) -print0 |
			LC_ALL=C sort -z | xargs -0 cat
	} | sha256sum | cut -c1-16
)"
printf '%s\n' "${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}/mlcd/$kit/venv"
