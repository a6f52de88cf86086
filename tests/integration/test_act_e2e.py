"""End to end with act in host mode: a model repository calls deliver.yml@v1.

The kit is a copy of this checkout whose own action references were rewritten to `@v1` by
scripts/release-refs.py, mapped with `--local-repository org/mlcd@v1=COPY` (so the test also
proves that the reusable workflow reaches its actions at its own ref). Third-party actions are
replaced by the stubs in tests/workflows/stubs (mapped by the SHA deliver.yml pins), and the
GitHub API is the local fake (GITHUB_API_URL). Two runs, on the example model with a small
caller config (short canary):

- pull_request: every check job passes, the PR comment is posted to the fake, no release;
- workflow_dispatch: the image is in the local registry, a release and a deployment are on
  the fake, and the canary was promoted in the local staging environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.fakes.github_api import FakeGitHub, serve

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests/workflows/stubs"
TOKEN = "ghs_actEndToEndToken0123456789abcdefAB"  # noqa: S105 - the fake's token
REPOSITORY = "acme/model"
REGISTRY = "127.0.0.1:5000"
ACT_TIMEOUT = 900


def _act() -> str:
    found = Path(sys.executable).parent / "act"
    return str(found) if found.exists() else shutil.which("act") or "act"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


def stub_mappings(deliver: Path) -> list[str]:
    """`--local-repository OWNER/REPO@SHA=STUB` for every third-party action deliver.yml pins."""
    text = deliver.read_text()
    mappings = []
    for repo, sha in sorted(
        set(re.findall(r"uses:\s*([\w.-]+/[\w.-]+)[\w./-]*@([0-9a-f]{40})", text))
    ):
        stub = STUBS / repo.split("/", 1)[1]
        assert stub.is_dir(), f"no test stub for {repo} (add tests/workflows/stubs/{stub.name})"
        mappings += ["--local-repository", f"{repo}@{sha}={stub}"]
    # the actions' own third-party uses (actions/setup pins setup-python and cache)
    for action in sorted((ROOT / "actions").glob("*/action.yml")):
        for repo, sha in set(
            re.findall(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})", action.read_text())
        ):
            entry = f"{repo}@{sha}={STUBS / repo.split('/', 1)[1]}"
            if entry not in mappings:
                mappings += ["--local-repository", entry]
    return mappings


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a release v1 would ship it (tracked and new files, refs at @v1)."""
    copy = tmp_path_factory.mktemp("kit")
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / rel)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/release-refs.py"), "--root", str(copy), "--ref", "v1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "@main" not in (copy / ".github/workflows/deliver.yml").read_text()
    return copy


@dataclass
class Caller:
    repo: Path
    artifacts: Path
    image: str
    port: int


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Caller:
    """A model repository: the example model, a small mlcd.yaml and the caller workflow."""
    repo = tmp_path_factory.mktemp("caller")
    for name in ("train.py", "ruff.toml", "data", "tests"):
        source = ROOT / "model" / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, repo / name)
    image = f"{REGISTRY}/mlcd-gh-e2e-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    (repo / "mlcd.yaml").write_text(
        (ROOT / "tests/workflows/mlcd.yaml")
        .read_text()
        .replace("IMAGE_NAME", image)
        .replace("ROUTER_PORT", str(port))
        .replace("REGISTRY_PATH", str(tmp_path_factory.mktemp("model-registry")))
    )
    workflows = repo / ".github/workflows"
    workflows.mkdir(parents=True)
    shutil.copy2(ROOT / "tests/workflows/ml.yml", workflows / "ml.yml")
    (repo / ".gitignore").write_text(".mlcd/\n.mlcd-registry/\n.mlcd-state/\n")
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("remote", "add", "origin", f"https://github.com/{REPOSITORY}.git", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "model", cwd=repo)
    return Caller(repo, tmp_path_factory.mktemp("artifacts"), image, port)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    with serve(repository=REPOSITORY, token=TOKEN) as running:
        yield running


def run_act(
    event: str,
    payload: dict[str, object],
    *,
    kit: Path,
    caller: Caller,
    fake: FakeGitHub,
    tmp: Path,
) -> subprocess.CompletedProcess[str]:
    event_file = tmp / f"{event}.json"
    event_file.write_text(json.dumps(payload))
    argv = [
        _act(),
        event,
        "-e",
        str(event_file),
        "-W",
        ".github/workflows/ml.yml",
        "-P",
        "ubuntu-latest=-self-hosted",
        "--artifact-server-addr",
        "127.0.0.1",
        "--cache-server-addr",
        "127.0.0.1",
        "--no-cache-server",
        "--local-repository",
        f"org/mlcd@v1={kit}",
        *stub_mappings(kit / ".github/workflows/deliver.yml"),
        "--env",
        f"GITHUB_API_URL={fake.api_base}",
        "--env",
        f"MLCD_ACT_ARTIFACTS={caller.artifacts / event}",
        "-s",
        f"GITHUB_TOKEN={TOKEN}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLCD_"))}
    done = subprocess.run(
        argv,
        cwd=caller.repo,
        capture_output=True,
        text=True,
        check=False,
        timeout=ACT_TIMEOUT,
        env=env,
    )
    (tmp / f"act-{event}.log").write_text(done.stdout + done.stderr)
    return done


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-80:])


@pytest.fixture(scope="module")
def pull_request_run(
    kit: Path, caller: Caller, fake: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    payload = {
        "action": "synchronize",
        "number": 1,
        "pull_request": {
            "number": 1,
            "head": {"sha": "0" * 40, "ref": "feature", "repo": {"full_name": REPOSITORY}},
            "base": {"ref": "main", "repo": {"full_name": REPOSITORY}},
        },
        "repository": {"full_name": REPOSITORY, "default_branch": "main"},
    }
    return run_act(
        "pull_request",
        payload,
        kit=kit,
        caller=caller,
        fake=fake,
        tmp=tmp_path_factory.mktemp("pr"),
    )


def test_pull_request_run_checks_and_comments(
    pull_request_run: subprocess.CompletedProcess[str], fake: FakeGitHub, caller: Caller
) -> None:
    assert pull_request_run.returncode == 0, _tail(pull_request_run)
    log = pull_request_run.stdout
    # the reusable workflow reached its own actions at its own ref
    assert "org/mlcd with ref v1 and subpath 'actions/setup/action.yml'" in log
    comments = fake.comments.get(1, [])
    assert len(comments) == 1, fake.requests
    body = comments[0]["body"]
    assert body.startswith("<!-- mlcd-report -->")
    for stage in ("lint", "test", "train", "evaluate", "build", "scan"):
        assert f"| {stage} |" in body
    assert "xychart-beta" in body
    assert fake.releases == []
    assert fake.deployments == []
    assert (caller.artifacts / "pull_request" / "sarif" / "mlcd-lint.sarif").is_file()


@pytest.fixture(scope="module")
def dispatch_run(
    pull_request_run: subprocess.CompletedProcess[str],
    kit: Path,
    caller: Caller,
    fake: FakeGitHub,
    tmp_path_factory: pytest.TempPathFactory,
) -> subprocess.CompletedProcess[str]:
    payload = {
        "inputs": {"environment": "staging", "strategy": "canary"},
        "ref": "refs/heads/main",
        "repository": {"full_name": REPOSITORY, "default_branch": "main"},
    }
    return run_act(
        "workflow_dispatch",
        payload,
        kit=kit,
        caller=caller,
        fake=fake,
        tmp=tmp_path_factory.mktemp("dispatch"),
    )


def test_dispatch_run_releases_and_deploys(
    dispatch_run: subprocess.CompletedProcess[str], fake: FakeGitHub, caller: Caller
) -> None:
    assert dispatch_run.returncode == 0, _tail(dispatch_run)
    bundle = caller.artifacts / "workflow_dispatch" / "mlcd-deploy"
    release = json.loads((bundle / "release" / "result.json").read_text())
    version, image = release["details"]["version"], release["details"]["image"]
    # the image is in the local registry, by digest
    name, digest = image.split("@", 1)
    repository = name.split("/", 1)[1]
    answer = requests.head(
        f"http://{REGISTRY}/v2/{repository}/manifests/{digest}",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    # a release with its assets, and a deployment whose last status is success
    [published] = fake.releases
    assert str(version) in published["tag_name"]
    assets = {a["name"] for a in published["assets"]}
    assert {"model-card.md", "metrics.json", "verdict.json"} <= assets
    assert any(a.endswith(".tar.gz") for a in assets)
    [deployment] = fake.deployments
    assert deployment["environment"] == "staging"
    assert deployment["payload"]["version"] == str(version)
    states = [s["state"] for s in fake.statuses[deployment["id"]]]
    assert states == ["in_progress", "success"]
    # the canary was promoted in the local staging environment
    deploy = json.loads((bundle / "deploy" / "result.json").read_text())
    assert deploy["status"] == "pass", deploy
    assert "promot" in json.dumps(deploy).lower()
