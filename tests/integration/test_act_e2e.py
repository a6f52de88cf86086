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

A canary needs something to be compared with: before the dispatch run the test makes an
earlier release of the same project (another `C`, so another model) live in staging with the
mlcd CLI, as an earlier delivery would have. The vulnerability scan really runs, on a small
Trivy database the test writes (tests/integration/trivydb.py; the real one cannot be
downloaded here) with one LOW advisory on openssl, below the caller's policy (CRITICAL).

What a self-hosted runner's environment would hold reaches every job through act's `--env`:
MLCD_STATE_DIR (the environments' state, outside the workspace that checkout cleans),
MLCD_TRIVY_CACHE (the database). The model registry is the local backend at an absolute
path in the caller's mlcd.yaml, so every job of the run sees the same one (on github.com,
where each job is a fresh machine, the `github` backend plays that part).
"""

from __future__ import annotations

import hashlib
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

from mlcd.registry import LocalRegistry
from mlcd.tools.nginx import Nginx
from tests.fakes.github_api import FakeGitHub, serve
from tests.integration.trivydb import make_trivy_db

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests/workflows/stubs"
TOKEN = "ghs_actEndToEndToken0123456789abcdefAB"  # noqa: S105 - the fake's token
REPOSITORY = "acme/model"
REGISTRY = "127.0.0.1:5000"
ACT_TIMEOUT = 900
# below the caller's scan.severity (CRITICAL): found and reported, does not fail the gate
ADVISORY = "CVE-2099-0042"


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
    project: str
    state: Path
    trivy_cache: Path
    registry: Path

    def env(self) -> dict[str, str]:
        """What the self-hosted runner's environment holds (act passes it on with --env)."""
        return {"MLCD_STATE_DIR": str(self.state), "MLCD_TRIVY_CACHE": str(self.trivy_cache)}


def _docker_lines(*args: str) -> list[str]:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=120
    )
    return done.stdout.split()


def _clean_up(caller: Caller) -> None:
    """Stop this test's router, remove its containers and images (only its own)."""
    for env in ("staging", "production"):
        Nginx(caller.state / env / "nginx").stop()
    label = f"label=mlcd.project={caller.project}"
    for name in _docker_lines("ps", "--all", "--format", "{{.Names}}", "--filter", label):
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    for tag in _docker_lines("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", caller.image):
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caller]:
    """A model repository: the example model, a small mlcd.yaml and the caller workflow."""
    repo = tmp_path_factory.mktemp("caller")
    for name in ("train.py", "ruff.toml", "data", "tests"):
        source = ROOT / "model" / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, repo / name)
    registry = tmp_path_factory.mktemp("model-registry")
    project = f"gh-e2e-{uuid.uuid4().hex[:8]}"
    image = f"{REGISTRY}/mlcd-{project}"
    port = _free_port()
    (repo / "mlcd.yaml").write_text(
        (ROOT / "tests/workflows/mlcd.yaml")
        .read_text()
        .replace("PROJECT_NAME", project)
        .replace("IMAGE_NAME", image)
        .replace("ROUTER_PORT", str(port))
        .replace("REGISTRY_PATH", str(registry))
    )
    workflows = repo / ".github/workflows"
    workflows.mkdir(parents=True)
    shutil.copy2(ROOT / "tests/workflows/ml.yml", workflows / "ml.yml")
    (repo / ".gitignore").write_text(".mlcd/\n.mlcd-registry/\n.mlcd-state/\n")
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("remote", "add", "origin", f"https://github.com/{REPOSITORY}.git", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "model", cwd=repo)
    trivy_cache = make_trivy_db(
        tmp_path_factory.mktemp("trivy-cache"),
        debian={
            "openssl": {ADVISORY: {"severity": "LOW", "title": "mlcd e2e flaw", "fixed": "9.9.9-1"}}
        },
        pip={},
    )
    made = Caller(
        repo,
        tmp_path_factory.mktemp("artifacts"),
        image,
        port,
        project,
        tmp_path_factory.mktemp("state"),
        trivy_cache,
        registry,
    )
    try:
        yield made
    finally:
        _clean_up(made)


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
        *(arg for key, value in caller.env().items() for arg in ("--env", f"{key}={value}")),
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
    # a pull request only reads the model registry
    assert LocalRegistry(caller.registry).versions() == []
    assert (caller.artifacts / "pull_request" / "sarif" / "mlcd-lint.sarif").is_file()


def _mlcd(repo: Path, out: Path, env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlcd", *args, "--config", "mlcd.yaml", "--out", str(out)],
        cwd=repo,
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, f"mlcd {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def stable(
    pull_request_run: subprocess.CompletedProcess[str],
    caller: Caller,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """An earlier release of the project (C=0.5: another model) live in staging, made with
    the CLI as an earlier delivery would have made it; returns its release version."""
    repo = tmp_path_factory.mktemp("earlier") / "repo"
    shutil.copytree(caller.repo, repo)
    config = repo / "mlcd.yaml"
    text = config.read_text()
    assert "params: {C: 1.0}" in text
    config.write_text(text.replace("params: {C: 1.0}", "params: {C: 0.5}"))
    out = repo.parent / "out"
    env = caller.env()
    for stage in ("train", "evaluate", "build", "scan", "release"):
        _mlcd(repo, out, env, stage)
    _mlcd(repo, out, env, "deploy", "staging")
    release = json.loads((out / "release" / "result.json").read_text())
    return str(release["details"]["version"])


@pytest.fixture(scope="module")
def dispatch_run(
    stable: str,  # after the pull_request run, which `stable` waits for
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
    dispatch_run: subprocess.CompletedProcess[str], fake: FakeGitHub, caller: Caller, stable: str
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
    assert published["tag_name"] == f"{caller.project}-v{version}"
    assets = {a["name"]: a["id"] for a in published["assets"]}
    assert {"model-card.md", "metrics.json", "verdict.json", "sbom.cdx.json"} <= set(assets)
    # the evidence asset is the archive the release recorded (its digest)
    evidence = fake.asset_content[assets[f"evidence-{version}.tar.gz"]]
    digest = "sha256:" + hashlib.sha256(evidence).hexdigest()
    assert digest == release["details"]["evidence_digest"]
    [deployment] = fake.deployments
    assert deployment["environment"] == "staging"
    assert deployment["payload"]["version"] == str(version)
    states = [s["state"] for s in fake.statuses[deployment["id"]]]
    assert states == ["in_progress", "success"]
    # the canary was promoted in the local staging environment, after analysis against the
    # earlier release
    deploy = json.loads((bundle / "deploy-staging" / "result.json").read_text())
    assert deploy["status"] == "pass", deploy
    assert deploy["details"]["outcome"] == "promoted", deploy["details"]
    assert deploy["details"]["measurements"], deploy["details"]
    state = json.loads((caller.state / "staging" / "state.json").read_text())
    assert state["stable"]["version"] == str(version), state
    assert state["stable"]["image"] == image, state
    assert state["rollout"] is None
    assert stable != str(version)
    # the release job registered the evaluated model (evaluate ran with --no-register)
    assert any("registered the evaluated model" in r for r in release["reasons"]), release
    assert state["previous"][-1]["version"] == stable, state
    # the staging router (on the caller's port) answers with the new release
    header, first = (bundle / "train" / "holdout.csv").read_text().splitlines()[:2]
    names, values = header.split(",")[:-1], [float(v) for v in first.split(",")[:-1]]
    answer = requests.post(
        f"http://127.0.0.1:{caller.port}/predict",
        json={"records": [dict(zip(names, values, strict=True))]},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == str(version)
    # the vulnerability scan really ran, on the test's database: the LOW advisory is found
    scan = json.loads((bundle / "scan" / "result.json").read_text())
    assert scan["status"] == "pass", scan
    assert ADVISORY in (bundle / "scan" / "findings.json").read_text()
