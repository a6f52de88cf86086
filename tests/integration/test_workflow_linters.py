"""actionlint (with shellcheck), check-jsonschema and zizmor on every workflow and action.

actionlint checks workflows; it resolves composite actions by local path, and the workflows
reach the kit's actions through its checkout at `./.mlcd-kit/actions/<name>`, so they are also
linted in a copy where those point at `./actions/<name>` (then actionlint checks every input
and output the workflow passes). The shell of every composite action's `run:` goes through
shellcheck too. zizmor runs at every severity: no finding at all for unpinned-uses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted(
    [
        *ROOT.glob(".github/workflows/*.yml"),
        *ROOT.glob("examples/*.yml"),
        *ROOT.glob("tests/workflows/*.yml"),
    ]
)
ACTIONS = sorted(
    [*ROOT.glob("actions/*/action.yml"), *ROOT.glob("tests/workflows/stubs/**/action.yml")]
)


def _tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name) or name


def _run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


def test_there_is_something_to_lint() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in WORKFLOWS}
    assert ".github/workflows/deliver.yml" in names
    assert ".github/workflows/ci.yml" in names
    assert len(ACTIONS) >= 10


def test_actionlint_with_shellcheck() -> None:
    assert shutil.which("shellcheck"), "actionlint needs shellcheck (scripts/setup/apt.sh)"
    done = _run([_tool("actionlint"), *map(str, WORKFLOWS)])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["deliver.yml", "checks.yml"])
def test_actionlint_resolves_the_kits_own_actions(tmp_path: Path, name: str) -> None:
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    shutil.copytree(ROOT / "actions", tmp_path / "actions")
    _run(["git", "init", "-q"], cwd=tmp_path)  # actionlint finds ./actions from the repo root
    deliver = tmp_path / ".github/workflows" / name
    text = deliver.read_text().replace("./.mlcd-kit/actions/", "./actions/")
    assert text.count("./actions/") >= 10
    deliver.write_text(text)
    done = _run([_tool("actionlint"), str(deliver)], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # and it does check them: a wrong input name is caught
    deliver.write_text(
        text.replace(
            "python-version: ${{ inputs.python-version }}",
            "python-versio: ${{ inputs.python-version }}",
            1,
        )
    )
    done = _run([_tool("actionlint"), str(deliver)], cwd=tmp_path)
    assert done.returncode != 0
    assert "python-versio" in done.stdout


def test_shellcheck_on_composite_action_scripts(tmp_path: Path) -> None:
    count = 0
    for action in ACTIONS:
        steps = yaml.safe_load(action.read_text())["runs"]["steps"]
        for index, step in enumerate(steps):
            if "run" not in step:
                continue
            assert "${{" not in step["run"], f"{action}: expression inside run: (use env:)"
            script = tmp_path / f"{action.parent.name}-{index}.sh"
            script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + step["run"])
            count += 1
    done = _run(["shellcheck", "-S", "style", *map(str, sorted(tmp_path.glob("*.sh")))])
    assert done.returncode == 0, done.stdout
    assert count >= 15


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", ACTIONS)],
)
def test_check_jsonschema(schema: str, files: list[Path]) -> None:
    done = _run([_tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_offline_has_no_finding_at_medium_or_above() -> None:
    targets = [".github/workflows", "examples", "actions", "tests/workflows"]
    done = _run([_tool("zizmor"), "--offline", "--min-severity", "medium", *targets])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout + done.stderr


def test_zizmor_finds_nothing_unpinned_at_any_severity() -> None:
    targets = [".github/workflows", "examples", "actions", "tests/workflows"]
    done = _run([_tool("zizmor"), "--offline", "--format", "json", *targets])
    findings = json.loads(done.stdout or "[]")
    unpinned = [f for f in findings if f.get("ident") == "unpinned-uses"]
    assert unpinned == [], json.dumps(unpinned, indent=1)[:3000]


def test_zizmor_would_catch_an_injection(tmp_path: Path) -> None:
    bad = tmp_path / ".github/workflows/bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        '    steps:\n      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    done = _run([_tool("zizmor"), "--offline", "--min-severity", "medium", str(bad)])
    assert done.returncode != 0
    assert "template-injection" in done.stdout


def test_every_third_party_action_is_pinned_to_a_sha_with_its_version() -> None:
    uses = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.MULTILINE)
    for path in [*WORKFLOWS, *ACTIONS]:
        for ref, rest in uses.findall(path.read_text()):
            if ref.startswith("./") or re.match(r"[\w.-]+/mlcd/\.github/workflows/", ref):
                continue  # the kit itself: its checkout, or (examples) a caller's pinned tag
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path}: {ref}"
            assert re.search(r"#\s*v\d+\.\d+\.\d+", rest), f"{path}: {ref} lacks a version comment"
