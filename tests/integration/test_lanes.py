"""scripts/test-lanes.sh, which `make test` runs: two pytest lanes side by side, the lane
apart on a test host of its own, both exit codes checked (5, no test selected, fails too).

PYTHON is a stand-in here that records what each lane was asked and exits as told; the
lane apart's test host is the real one (scripts/setup/test-host-apart.env): during
`make test` it is already up, and the last run using it tears it down.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LANES = ROOT / "scripts" / "test-lanes.sh"

# the stand-in for PYTHON: `-m pytest PATH... -m EXPR ARGS...`; the lane is told by EXPR
FAKE_PYTHON = """#!/usr/bin/env bash
expr=
prev=
for arg in "$@"; do
    [[ $prev == -m && $arg != pytest ]] && expr=$arg
    prev=$arg
done
lane=apart rc=$RC_APART
if [[ $expr == *"not (apart or unit)"* ]]; then lane=main rc=$RC_MAIN; fi
printf '%s\\n' "$@" >"$OUT/$lane.args"
printf '%s\\n' "${MLCD_TEST_HOST_NS:-}" >"$OUT/$lane.host"
echo "the output of lane $lane"
exit "$rc"
"""


def _lanes(
    tmp_path: Path, *args: str, main: int = 0, apart: int = 0
) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCD_TEST_HOST")}
    # (TMPDIR stays: the lock that says who uses the lane apart's host is there)
    env.update(OUT=str(tmp_path), RC_MAIN=str(main), RC_APART=str(apart))
    env.pop("MLCD_LANES", None)
    return subprocess.run(
        ["bash", str(LANES), str(fake), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_both_lanes_run_their_half_with_the_same_arguments_the_apart_one_on_its_own_host(
    tmp_path: Path,
) -> None:
    done = _lanes(tmp_path, "integration", "tests/integration", "--", "-q", "-k", "this or that")
    assert done.returncode == 0, done.stdout + done.stderr
    main = (tmp_path / "main.args").read_text().splitlines()
    apart = (tmp_path / "apart.args").read_text().splitlines()
    assert main[:3] == ["-m", "pytest", "tests/integration"]
    assert main[main.index("-m", 2) + 1] == "(integration) and not (apart or unit)"
    assert apart[apart.index("-m", 2) + 1] == "(integration) and (apart or unit)"
    for lane in (main, apart):
        assert lane[-3:] == ["-q", "-k", "this or that"]  # PYTEST_ARGS, last: they win
    assert "cache_dir=.pytest_cache/apart" in apart
    # the lane apart ran on the second test host, the lane main on the first
    assert (tmp_path / "apart.host").read_text().strip() == "mlcd-testhost-apart"
    assert (tmp_path / "main.host").read_text().strip() == ""
    # main's output live, then the lane apart's log, then both exit codes
    out = done.stdout
    assert (
        out.index("the output of lane main")
        < out.index("===== lane apart")
        < out.index("the output of lane apart")
    )
    assert out.rstrip().endswith("===== lane main exit 0, lane apart exit 0 =====")


def test_either_lane_failing_fails_the_run_no_test_selected_too(tmp_path: Path) -> None:
    empty = _lanes(tmp_path, "", "tests", main=0, apart=5)
    assert empty.returncode == 5, empty.stdout + empty.stderr
    assert "lane main exit 0, lane apart exit 5" in empty.stdout
    failed = _lanes(tmp_path, "", "tests", main=1, apart=0)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "lane main exit 1, lane apart exit 0" in failed.stdout
    main = (tmp_path / "main.args").read_text().splitlines()
    assert main[main.index("-m", 2) + 1] == "not (apart or unit)"  # no MARKEXPR: every test
