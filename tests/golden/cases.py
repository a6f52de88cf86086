"""Every golden document, produced in-process from fixed inputs.

Three sources:
- a real project run stage by stage through `mlcd.cli.main` (lint, train, evaluate against a
  registered champion, scan; a regression project for the other task's documents), with the
  programs mlcd starts answered by `tests.golden.fakes` (no process starts);
- the synthetic bundle of every stage (`tests.runbundle`), for the run summary, the PR
  comment, the run page and the release's texts, which read a whole run;
- the records of build, release and deploy, which need Docker, a registry and a router, made
  from fixed inputs by the stages' own rendering code (`tests.golden.delivery`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcd import cli, report, runreport
from mlcd.evidence import Bundle
from mlcd.github import comment, publish
from mlcd.registry import LocalRegistry
from tests import runbundle
from tests.golden import delivery
from tests.golden.fakes import FakePrograms
from tests.golden.normalise import normalise
from tests.golden.structure import outline
from tests.mlprojects import write_project

# the champion: the same data and split, a model that sees only two features
CHAMPION_CODE = """
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

def build_model():
    pick = ColumnTransformer([("keep", "passthrough", ["mean smoothness", "mean texture"])])
    return Pipeline([("pick", pick), ("classify", LogisticRegression())])
"""
CLASSIFICATION = {
    "thresholds": {"accuracy": {"min": 0.9}, "roc_auc": {"min": 0.95}, "log_loss": {"max": 0.5}},
    "max-regression": {"roc_auc": 0.01, "f1": 0.0},
    "slices": [
        {
            "feature": "mean radius",
            "bins": [0, 12, 15, 30],
            "min-rows": 25,
            "thresholds": {"accuracy": {"min": 0.97}},
        }
    ],
}
REGRESSION = {
    "thresholds": {"r2": {"min": 0.2}, "rmse": {"max": 80}},
    "slices": [
        {"feature": "sex", "thresholds": {"mae": {"max": 1000}}},
        {"feature": "age", "bins": [0, 30, 60, 100], "min-rows": 30},
    ],
}
IGNORES = """\
ignores:
  - id: CVE-2030-0003
    package: zlib
    reason: not reachable, the server never inflates untrusted data
    expires: 2099-12-31
    owner: ml-platform
  - id: DS002
    reason: the golden Dockerfile is only scanned
    expires: 2020-01-01
  - id: CVE-1999-0001
    reason: an entry that matches nothing
    expires: 2099-12-31
"""
DOCKERFILE = 'FROM python:3.11-slim\nCOPY . /app\nCMD ["python", "/app/train.py"]\n'

Documents = dict[str, str]


class Run:
    """The folders of one production and their placeholders."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.roots = {"TMP": tmp}

    def doc(self, path: Path, *, is_json: bool = False) -> str:
        return normalise(path.read_text("utf-8"), self.roots, is_json=is_json)

    def text(self, text: str) -> str:
        return normalise(text, self.roots)

    def page(self, page: str) -> str:
        """An HTML page's structure, its machine-dependent text stripped first."""
        return outline(normalise(page, self.roots, markup=True))


def _environment(tmp: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
    for name in (
        "MLCD_REUSE",
        "MLCD_IMAGE",
        "GITHUB_ACTIONS",
        "GITHUB_TOKEN",
        "TRIVY_CACHE_DIR",
        "NO_COLOR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLCD_REGISTRY_PATH", str(tmp / "registry"))
    cache = tmp / "trivy-cache"
    (cache / "db").mkdir(parents=True)
    (cache / "db" / "trivy.db").write_bytes(b"\0" * 16)
    meta = {"Version": 2, "UpdatedAt": "2026-01-01T00:00:00Z", "NextUpdate": "2099-01-01T00:00:00Z"}
    (cache / "db" / "metadata.json").write_text(json.dumps(meta), "utf-8")
    monkeypatch.setenv("MLCD_TRIVY_CACHE", str(cache))
    binaries = tmp / "bin"
    binaries.mkdir()
    (binaries / "trivy").write_text("#!/bin/sh\nexit 1\n", "utf-8")
    (binaries / "trivy").chmod(0o755)
    monkeypatch.setenv("PATH", f"{binaries}:/usr/bin:/bin")
    monkeypatch.setattr("sys.executable", str(binaries / "python"))
    monkeypatch.setattr(subprocess, "run", FakePrograms(project))


def _mlcd(*argv: str) -> int:
    return cli.main(list(argv))


def _classification(run: Run) -> Documents:
    tmp = run.tmp
    champion = write_project(tmp / "champion", code=CHAMPION_CODE, evaluate=CLASSIFICATION)
    assert _mlcd("train", "--config", str(champion), "--out", str(tmp / "champion-out")) == 0
    _mlcd("evaluate", "--config", str(champion), "--out", str(tmp / "champion-out"))
    LocalRegistry(tmp / "registry").set_alias("champion", "v1")

    config = write_project(tmp / "project", evaluate=CLASSIFICATION)
    project, out = config.parent, tmp / "out"
    (project / ".mlcd-ignore.yaml").write_text(IGNORES, "utf-8")
    (project / "Dockerfile").write_text(DOCKERFILE, "utf-8")
    (project / "tests").mkdir()
    (project / "tests" / "test_model.py").write_text("def test_fits():\n    pass\n", "utf-8")
    common = ("--config", str(config), "--out", str(out))
    assert _mlcd("lint", *common) == 1
    assert _mlcd("test", *common) == 1
    assert _mlcd("train", *common) == 0
    assert _mlcd("evaluate", *common) == 1  # one slice misses its bound
    assert _mlcd("scan", *common, "--image", "golden:1") == 1

    docs = {
        "lint/lint.sarif.json": run.doc(out / "lint/lint.sarif", is_json=True),
        "lint/summary.md": run.doc(out / "lint/summary.md"),
        "test/summary.md": run.doc(out / "test/summary.md"),
        "train/summary.md": run.doc(out / "train/summary.md"),
        "evaluate/summary.md": run.doc(out / "evaluate/summary.md"),
        "evaluate/model_card.md": run.doc(out / "evaluate/model_card.md"),
        "evaluate/verdict.json": run.doc(out / "evaluate/verdict.json", is_json=True),
        "evaluate/report.structure.txt": run.page(
            (out / "evaluate/report.html").read_text("utf-8")
        ),
        "scan/scan.sarif.json": run.doc(out / "scan/scan.sarif", is_json=True),
        "scan/findings.json": run.doc(out / "scan/findings.json", is_json=True),
        "scan/summary.md": run.doc(out / "scan/summary.md"),
    }
    bundle = Bundle(out)
    docs["project-run/report.md"] = run.text(report.render_markdown(bundle))
    docs["project-run/comment.md"] = run.text(comment.render(bundle, comment.RunInfo()))
    page = runreport.render_html(bundle, ["lint", "test", "train", "evaluate", "scan"])
    docs["project-run/page.structure.txt"] = run.page(page)
    return docs


def _regression(run: Run) -> Documents:
    config = write_project(run.tmp / "regression", task="regression", evaluate=REGRESSION)
    out = run.tmp / "regression-out"
    common = ("--config", str(config), "--out", str(out), "--no-register")
    assert _mlcd("train", *common[:4]) == 0
    assert _mlcd("evaluate", *common) == 0
    return {
        "evaluate-regression/summary.md": run.doc(out / "evaluate/summary.md"),
        "evaluate-regression/model_card.md": run.doc(out / "evaluate/model_card.md"),
        "evaluate-regression/verdict.json": run.doc(out / "evaluate/verdict.json", is_json=True),
    }


def _synthetic(run: Run) -> Documents:
    root = run.tmp / "bundle"
    bundle = runbundle.write_bundle(root)
    runbundle.write_run_json(root)
    info = comment.RunInfo(
        repository="acme/models",
        run_id="42",
        sha=runbundle.INPUTS["git_sha"],
        artifacts={"evidence": "https://github.com/acme/models/actions/runs/42/artifacts/7"},
    )
    facts = publish.release_facts(bundle, "breast-cancer", by="golden")
    return {
        "run/report.md": run.text(report.render_markdown(bundle)),
        "run/comment.md": run.text(comment.render(bundle, info)),
        "run/page.structure.txt": run.page(runreport.render_html(bundle)),
        "run/release-body.md": run.text(publish.release_body(bundle, facts, info.run_url)),
        "run/release-model-card.md": run.text(publish.model_card(bundle, facts)),
    }


def _delivery(run: Run) -> Documents:
    """build, release and deploy: their records made from fixed inputs (tests.golden.delivery)."""
    return {name: run.text(text) for name, text in delivery.produce(run.tmp).items()}


PRODUCERS: tuple[Callable[[Run], Documents], ...] = (
    _classification,
    _regression,
    _synthetic,
    _delivery,
)


def produce(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Documents:
    """Every golden document by its path under tests/golden/expected/."""
    _environment(tmp, tmp / "project", monkeypatch)
    monkeypatch.chdir(tmp)
    run = Run(tmp)
    docs: Documents = {}
    for producer in PRODUCERS:
        docs |= producer(run)
    return dict(sorted(docs.items()))


def write(docs: Documents, folder: Path) -> None:
    """Replace the golden files in `folder` with `docs`."""
    if folder.exists():
        shutil.rmtree(folder)
    for name, text in docs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")


def read(folder: Path) -> Documents:
    return {
        p.relative_to(folder).as_posix(): p.read_text("utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
