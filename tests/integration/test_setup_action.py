"""actions/setup's check of the kit's commit, run as the runner runs it (bash, real git).

A caller pinned to an annotated tag may be handed, as `job.workflow_sha`, either the commit or
the tag object (GitHub's docs do not settle which): the check passes for both, and still
refuses a checkout at any other commit, a tag of another commit, and a value that is not a
full SHA.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _script() -> str:
    action = yaml.safe_load((ROOT / "actions/setup/action.yml").read_text())
    [step] = [s for s in action["runs"]["steps"] if s.get("id") == "commit"]
    return str(step["run"])


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | Path]:
    """A kit at tag v1 (annotated), a newer main, and a tag v0 of an older commit; the
    checkout (a clone, as actions/checkout makes) is at v1's commit."""
    origin = tmp_path_factory.mktemp("origin")
    _git(origin, "init", "-q", "-b", "main")
    (origin / "a").write_text("0")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "v0")
    _git(origin, "tag", "-a", "v0", "-m", "older")
    (origin / "a").write_text("1")
    _git(origin, "commit", "-qam", "v1")
    _git(origin, "tag", "-a", "v1", "-m", "mlcd v1")
    (origin / "a").write_text("2")
    _git(origin, "commit", "-qam", "main moves on")
    checkout = tmp_path_factory.mktemp("work") / ".mlcd-kit"
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True, timeout=60)
    _git(checkout, "-c", "advice.detachedHead=false", "checkout", "-q", "v1")
    return {
        "root": checkout,
        "commit": _git(origin, "rev-parse", "v1^{commit}"),
        "tag": _git(origin, "rev-parse", "v1"),
        "older_tag": _git(origin, "rev-parse", "v0"),
        "main": _git(origin, "rev-parse", "main"),
    }


def _check(
    kit: dict[str, str | Path], wanted: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    output = tmp_path / "output"
    output.write_text("")
    return subprocess.run(
        ["bash", "-e", "-c", _script()],
        env={
            "PATH": "/usr/bin:/bin",
            "ROOT": str(kit["root"]),
            "WANTED": wanted,
            "GITHUB_OUTPUT": str(output),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("given", ["commit", "tag"])
def test_the_commit_or_the_annotated_tag_object_passes(
    kit: dict[str, str | Path], given: str, tmp_path: Path
) -> None:
    assert kit["tag"] != kit["commit"]  # an annotated tag is an object of its own
    done = _check(kit, str(kit[given]), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "output").read_text() == f"head={kit['commit']}\n"


@pytest.mark.parametrize("given", ["main", "older_tag"])
def test_any_other_commit_is_refused(
    kit: dict[str, str | Path], given: str, tmp_path: Path
) -> None:
    done = _check(kit, str(kit[given]), tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"::error::the mlcd checkout is at '{kit['commit']}'" in done.stdout


def test_a_value_that_is_not_a_full_sha_is_refused(
    kit: dict[str, str | Path], tmp_path: Path
) -> None:
    done = _check(kit, "v1", tmp_path)
    assert done.returncode == 1
    assert "not a full commit SHA" in done.stdout
