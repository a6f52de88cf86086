"""The project is the project: a root-level model repository with the DEFAULT config (no
lint or test paths) and a real copy of mlcd at `.mlcd-kit/`, as every job of deliver.yml
checks it out. lint, test, train and scan pass, and no `.mlcd-kit` path appears in the
lint SARIF, the scan SARIF, the coverage report or anywhere else in the run folder.
(Before mlcd.projectfiles, lint failed here with ruff 2 and bandit 6 findings, all in
mlcd's own files.)"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from mlcd.cli import main
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

TRAIN = '''\
"""The team's model."""

from sklearn.linear_model import LogisticRegression


def build_model(c: float = 1.0) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=200)
'''

TEST = '''\
"""The team's own test."""

from train import build_model


def test_build_model_is_unfitted() -> None:
    model = build_model(c=0.5)
    assert model.C == 0.5
    assert not hasattr(model, "coef_")
'''

CONFIG = """\
version: 1
project: root-level
model:
  task: classification
  entrypoint: train.py:build_model
  data: data.csv
  target: label
registry: {backend: local}
"""


def _kit_copy(dest: Path) -> None:
    """The kit as git has it (`git archive HEAD`): what actions/checkout puts there."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
    ).stdout
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rootlevel") / "repo"
    root.mkdir()
    (root / "train.py").write_text(TRAIN)
    (root / "tests").mkdir()
    (root / "tests" / "test_train.py").write_text(TEST)
    rows = ["x1,x2,label"] + [f"{i % 9},{(i * 5) % 13},{int(i % 9 > 4)}" for i in range(60)]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    (root / "mlcd.yaml").write_text(CONFIG)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    _kit_copy(root / ".mlcd-kit")
    assert (root / ".mlcd-kit" / "scripts" / "mlcd" / "cli.py").is_file()
    return root


def _mlcd(repo: Path, *args: str) -> int:
    return main([*args, "--config", str(repo / "mlcd.yaml"), "--out", str(repo / ".mlcd")])


def test_lint_test_train_and_scan_read_only_the_teams_files(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _mlcd(repo, "lint") == 0, capsys.readouterr()
    lint = json.loads((repo / ".mlcd" / "lint" / "result.json").read_text())
    assert lint["metrics"]["ruff_findings"] == 0
    assert lint["metrics"]["bandit_failing"] == 0
    assert _mlcd(repo, "test") == 0, capsys.readouterr()
    coverage = json.loads((repo / ".mlcd" / "test" / "coverage.json").read_text())
    assert "train.py" in coverage["files"]
    assert not [name for name in coverage["files"] if ".mlcd-kit" in name]
    assert _mlcd(repo, "train") == 0, capsys.readouterr()
    assert _mlcd(repo, "scan", "--no-image") == 0, capsys.readouterr()
    sarif = json.loads((repo / ".mlcd" / "scan" / "scan.sarif").read_text())
    assert sarif["runs"], "the scan wrote no SARIF run"
    leaked = [
        str(path.relative_to(repo))
        for path in sorted((repo / ".mlcd").rglob("*"))
        if path.is_file() and ".mlcd-kit" in path.read_text("utf-8", errors="replace")
    ]
    assert leaked == [], f"mlcd's own checkout appears in the run folder: {leaked}"


def test_a_finding_of_the_team_is_still_found(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exclusions leave the team's own files in: a finding in them still fails."""
    bad = repo / "helpers.py"
    bad.write_text(
        "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"
    )
    try:
        assert _mlcd(repo, "lint") == 1
        sarif = json.loads((repo / ".mlcd" / "lint" / "lint.sarif").read_text())
        uris = {
            loc["physicalLocation"]["artifactLocation"]["uri"]
            for run in sarif["runs"]
            for result in run["results"]
            for loc in result["locations"]
        }
        assert "helpers.py" in uris
        assert not [uri for uri in uris if uri.startswith(".mlcd-kit")]
    finally:
        bad.unlink()
        capsys.readouterr()
