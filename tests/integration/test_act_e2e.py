"""End to end with act in host mode: a model repository calls deliver.yml@v1.

The kit is this checkout committed twice in a local git repository: tag `v1` (this tree) and a
newer `main` whose package version is 9.9.9. act maps `org/mlcd@v1` and `org/mlcd@main` to
those two trees (`--local-repository`); the caller pins `@v1`. GitHub hands every job of the
called workflow its own commit (`job.workflow_sha`); act has no such context, so the test
stands in for GitHub: it resolves the caller's `@v1` to its commit and hands that to the
workflow as `vars.MLCD_KIT_SHA` (the fallback docs/github.md describes). Every job then checks
mlcd out at that commit (the checkout stub clones the local git repository) and runs its
actions and engine from there: each job's log names the version and commit it ran.

Third-party actions are replaced by the stubs in tests/workflows/stubs (mapped by the SHA
the workflows pin), and the GitHub API is the local fake (GITHUB_API_URL). Three runs, on the
example model with a small caller config (short canary), sharing one caller repository, one
model registry and one environments' state, as one repository's history would:

- pull_request: the checks only; every job ran the tag's kit; the PR comment is posted to the
  fake; nothing is pushed, released or deployed;
- push to main: the checks, then the release of the image the build job built and scanned
  (carried as an artifact and loaded: the pushed manifest's config digest is the build's image
  id, and the build job removed the image from the engine, so nothing could be rebuilt), and
  a canary to staging against an earlier release;
- workflow_dispatch to production: no release named, so the newest release that passed
  staging (the push's) goes out blue/green, with no train, build or release job in the run.

The earlier release that the canary is compared with is made with the mlcd CLI before the
push run, as an earlier delivery would have made it. The vulnerability scan really runs, on a
small Trivy database the test writes (tests/integration/trivydb.py) with one LOW advisory on
openssl, below the caller's policy (CRITICAL). MLCD_STATE_DIR and MLCD_TRIVY_CACHE reach every
job through act's `--env`, as a self-hosted runner's environment would hold them; the model
registry is the local backend at an absolute path in the caller's mlcd.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from mlcd.ports import free_port
from mlcd.registry import LocalRegistry
from mlcd.tools.nginx import Nginx
from tests.fakes.github_api import FakeGitHub, serve
from tests.integration.trivydb import make_trivy_db

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests/workflows/stubs"
TOKEN = "ghs_actEndToEndToken0123456789abcdefAB"  # noqa: S105 - the fake's token
REPOSITORY = "acme/model"
KIT = "org/mlcd"
REGISTRY = "127.0.0.1:5000"
ACT_TIMEOUT = 1200
MAIN_VERSION = "9.9.9"  # the newer main's package version: a job that ran main shows it
# below the caller's scan.severity (CRITICAL): found and reported, does not fail the gate
ADVISORY = "CVE-2099-0042"
# the display names of deliver.yml's jobs that a checks run has
CHECK_JOBS = {"plan", "lint", "test", "train", "evaluate", "build and scan", "report"}
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)


def _act() -> str:
    found = Path(sys.executable).parent / "act"
    return str(found) if found.exists() else shutil.which("act") or "act"


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip()


def _pinned(text: str) -> set[tuple[str, str]]:
    return set(re.findall(r"uses:\s*([\w.-]+/[\w.-]+)[\w./-]*@([0-9a-f]{40})", text))


def stub_mappings(kit: Path) -> list[str]:
    """`--local-repository OWNER/REPO@SHA=STUB` for every third-party action the kit pins."""
    files = [*(kit / ".github/workflows").glob("*.yml"), *(kit / "actions").glob("*/action.yml")]
    mappings: list[str] = []
    for repo, sha in sorted(set().union(*(_pinned(f.read_text()) for f in files))):
        stub = STUBS / repo.split("/", 1)[1]
        assert stub.is_dir(), f"no test stub for {repo} (add tests/workflows/stubs/{stub.name})"
        mappings += ["--local-repository", f"{repo}@{sha}={stub}"]
    return mappings


@dataclass
class Kit:
    """mlcd in a local git repository at two commits: tag v1 (this tree) and a newer main."""

    git_root: Path  # holds org/mlcd, what the checkout stub clones
    v1: Path  # the tree at v1, what act runs for org/mlcd@v1
    main: Path  # the tree at main, what act runs for org/mlcd@main
    v1_sha: str
    main_sha: str


def _export(repo: Path, ref: str, target: Path) -> None:
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=repo, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    base = tmp_path_factory.mktemp("kit")
    repo = base / "git" / KIT
    repo.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = ROOT / rel
        if source.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / rel)
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "mlcd v1", cwd=repo)
    _git("tag", "v1", cwd=repo)
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text()
    assert re.search(r'(?m)^version = "[^"]+"$', text)
    pyproject.write_text(re.sub(r'(?m)^version = "[^"]+"$', f'version = "{MAIN_VERSION}"', text))
    _git("commit", "-qam", "main moves on", cwd=repo)
    made = Kit(
        base / "git",
        base / "v1",
        base / "main",
        _git("rev-parse", "v1^{commit}", cwd=repo),
        _git("rev-parse", "main", cwd=repo),
    )
    _export(repo, "v1", made.v1)
    _export(repo, "main", made.main)
    assert made.v1_sha != made.main_sha
    return made


@dataclass
class Caller:
    repo: Path
    artifacts: Path
    image: str
    port: int
    production_port: int
    project: str
    state: Path
    trivy_cache: Path
    registry: Path
    runs: dict[str, float] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What the self-hosted runner's environment holds (act passes it on with --env)."""
        return {"MLCD_STATE_DIR": str(self.state), "MLCD_TRIVY_CACHE": str(self.trivy_cache)}


def _docker_lines(*args: str) -> list[str]:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=120
    )
    return done.stdout.split()


def _clean_up(caller: Caller) -> None:
    """Stop this test's routers, remove its containers and images (only its own)."""
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
    port, production_port = free_port(), free_port()
    (repo / "mlcd.yaml").write_text(
        (ROOT / "tests/workflows/mlcd.yaml")
        .read_text()
        .replace("PROJECT_NAME", project)
        .replace("IMAGE_NAME", image)
        .replace("PRODUCTION_PORT", str(production_port))
        .replace("ROUTER_PORT", str(port))
        .replace("REGISTRY_PATH", str(registry))
    )
    workflows = repo / ".github/workflows"
    workflows.mkdir(parents=True)
    shutil.copy2(ROOT / "tests/workflows/ml.yml", workflows / "ml.yml")
    (repo / ".gitignore").write_text(".mlcd/\n.mlcd-kit/\n.mlcd-registry/\n.mlcd-state/\n")
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
        production_port,
        project,
        tmp_path_factory.mktemp("state"),
        trivy_cache,
        registry,
    )
    try:
        yield made
    finally:
        _clean_up(made)
        print(f"act run times (s): {made.runs}")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    with serve(repository=REPOSITORY, token=TOKEN) as running:
        yield running


@dataclass
class Run:
    done: subprocess.CompletedProcess[str]
    artifacts: Path

    @property
    def log(self) -> str:
        return self.done.stdout + self.done.stderr

    def tail(self) -> str:
        return "\n".join(self.log.splitlines()[-100:])

    def kit_lines(self) -> dict[str, set[tuple[str, str]]]:
        """Per job (display name) of the called workflow: the (mlcd version, commit) its
        setup step reported (`mlcd kit: mlcd X.Y.Z from DIR at SHA`)."""
        found: dict[str, set[tuple[str, str]]] = {}
        pattern = re.compile(r"^\[([^\]]+)\].*mlcd kit: (?:mlcd )?(\S+) from \S+ at (\S+)")
        for line in self.log.splitlines():
            match = pattern.match(line)
            if match:
                job = match.group(1).split("/")[-1].strip()
                found.setdefault(job, set()).add((match.group(2), match.group(3)))
        return found


def run_act(
    event: str, payload: dict[str, object], *, kit: Kit, caller: Caller, fake: FakeGitHub
) -> Run:
    event_file = caller.artifacts / f"{event}.json"
    event_file.write_text(json.dumps(payload))
    artifacts = caller.artifacts / event
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
        f"{KIT}@v1={kit.v1}",
        "--local-repository",
        f"{KIT}@main={kit.main}",
        *stub_mappings(kit.v1),
        # GitHub's job.workflow_repository / job.workflow_sha for a caller pinned to @v1
        "--var",
        f"MLCD_KIT_REPOSITORY={KIT}",
        "--var",
        f"MLCD_KIT_SHA={kit.v1_sha}",
        "--env",
        f"MLCD_ACT_GIT={kit.git_root}",
        "--env",
        f"GITHUB_API_URL={fake.api_base}",
        "--env",
        f"MLCD_ACT_ARTIFACTS={artifacts}",
        *(arg for key, value in caller.env().items() for arg in ("--env", f"{key}={value}")),
        "-s",
        f"GITHUB_TOKEN={TOKEN}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLCD_"))}
    started = time.monotonic()
    done = subprocess.run(
        argv,
        cwd=caller.repo,
        capture_output=True,
        text=True,
        check=False,
        timeout=ACT_TIMEOUT,
        env=env,
    )
    caller.runs[event] = round(time.monotonic() - started, 1)
    (caller.artifacts / f"act-{event}.log").write_text(done.stdout + done.stderr)
    return Run(done, artifacts)


def _registry_tags(image: str) -> list[str]:
    repository = image.split("/", 1)[1]
    answer = requests.get(f"http://{REGISTRY}/v2/{repository}/tags/list", timeout=10)
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return list(answer.json().get("tags") or [])


def _config_digest(image: str) -> str:
    """The config digest (the image id) of `name@sha256:…` as the registry serves it."""
    name, digest = image.split("@", 1)
    repository = name.split("/", 1)[1]
    answer = requests.get(
        f"http://{REGISTRY}/v2/{repository}/manifests/{digest}",
        headers={"Accept": MANIFEST_TYPES},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["config"]["digest"])


@pytest.fixture(scope="module")
def pull_request_run(kit: Kit, caller: Caller, fake: FakeGitHub) -> Run:
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
    return run_act("pull_request", payload, kit=kit, caller=caller, fake=fake)


def test_pull_request_run_checks_and_comments(
    pull_request_run: Run, fake: FakeGitHub, caller: Caller, kit: Kit
) -> None:
    run = pull_request_run
    assert run.done.returncode == 0, run.tail()
    # every job of the called workflow ran the tag's actions and engine, none main's
    ran = run.kit_lines()
    assert set(ran) >= CHECK_JOBS, [line for line in run.log.splitlines() if "mlcd kit" in line]
    for job, seen in ran.items():
        assert seen == {("0.1.0", kit.v1_sha)}, (job, seen)
    assert f"mlcd {MAIN_VERSION}" not in run.log
    assert "org/mlcd with ref main" not in run.log
    comments = fake.comments.get(1, [])
    assert len(comments) == 1, fake.requests
    body = comments[0]["body"]
    assert body.startswith("<!-- mlcd-report -->")
    for stage in ("lint", "test", "train", "evaluate", "build", "scan"):
        assert f"| {stage} |" in body
    assert "xychart-beta" in body
    # checks only: nothing pushed, released, registered or deployed
    assert _registry_tags(caller.image) == []
    assert fake.releases == []
    assert fake.deployments == []
    assert LocalRegistry(caller.registry).versions() == []
    assert not (run.artifacts / f"mlcd-image-{caller.project}").exists()
    assert (run.artifacts / "sarif" / f"mlcd-{caller.project}-lint.sarif").is_file()
    assert (run.artifacts / "sarif" / f"mlcd-{caller.project}-scan.sarif").is_file()
    # the pull request path asks the API for little: the comment lookup and its creation
    calls = [r for r in fake.requests if r.path.startswith("/repos/")]
    assert len(calls) <= 6, [(r.method, r.path) for r in calls]


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
    pull_request_run: Run,  # after the pull_request run, which must find no release
    caller: Caller,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """An earlier release of the project (C=0.5: another model) live in staging, made with
    the CLI as an earlier delivery would have made it; returns its release version."""
    assert pull_request_run.done.returncode is not None
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
def push_run(stable: str, kit: Kit, caller: Caller, fake: FakeGitHub) -> Run:
    assert stable
    payload = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": "1" * 40,
        "repository": {"full_name": REPOSITORY, "default_branch": "main"},
    }
    return run_act("push", payload, kit=kit, caller=caller, fake=fake)


def test_push_releases_the_built_image_and_canaries_it(
    push_run: Run, fake: FakeGitHub, caller: Caller, stable: str, kit: Kit
) -> None:
    run = push_run
    assert run.done.returncode == 0, run.tail()
    ran = run.kit_lines()
    assert set(ran) >= {*CHECK_JOBS, "release", "deploy to staging"}, ran
    assert all(seen == {("0.1.0", kit.v1_sha)} for seen in ran.values()), ran
    built = json.loads(
        (run.artifacts / f"mlcd-{caller.project}-build" / "build" / "result.json").read_text()
    )
    bundle = run.artifacts / f"mlcd-{caller.project}-deploy-staging"
    release = json.loads((bundle / "release" / "result.json").read_text())
    version, image = release["details"]["version"], release["details"]["image"]
    # the image released is the image the build job built and scanned: same image id, and
    # the registry's manifest of the release names it as its config
    assert release["details"]["image_id"] == built["details"]["image_id"]
    assert _config_digest(image) == built["details"]["image_id"]
    assert "loaded the image the checks built and scanned" in run.log
    assert f"saved {built['details']['image_id']}" in run.log
    # one GitHub release for the version, never marked latest
    [published] = fake.releases
    assert published["tag_name"] == f"{caller.project}-v{version}"
    created = list(fake.seen("POST", r"/repos/[^/]+/[^/]+/releases"))
    assert [r.json()["make_latest"] for r in created] == ["false"], created
    assets = {a["name"]: a["id"] for a in published["assets"]}
    assert {"model-card.md", "metrics.json", "verdict.json", "sbom.cdx.json"} <= set(assets)
    evidence = fake.asset_content[assets[f"evidence-{version}.tar.gz"]]
    assert "sha256:" + hashlib.sha256(evidence).hexdigest() == release["details"]["evidence_digest"]
    # a deployment to staging whose last status is success
    [deployment] = [d for d in fake.deployments if d["environment"] == "staging"]
    assert deployment["payload"]["version"] == str(version)
    assert [s["state"] for s in fake.statuses[deployment["id"]]] == ["in_progress", "success"]
    # the canary was promoted after analysis against the earlier release
    deploy = json.loads((bundle / "deploy-staging" / "result.json").read_text())
    assert deploy["status"] == "pass", deploy
    assert deploy["details"]["outcome"] == "promoted", deploy["details"]
    assert deploy["details"]["measurements"], deploy["details"]
    state = json.loads((caller.state / "staging" / "state.json").read_text())
    assert state["stable"]["version"] == str(version), state
    assert state["stable"]["image"] == image, state
    assert state["previous"][-1]["version"] == stable, state
    assert any("registered the evaluated model" in r for r in release["reasons"]), release
    # the staging router answers with the new release
    header, first = (bundle / "train" / "holdout.csv").read_text().splitlines()[:2]
    names, values = header.split(",")[:-1], [float(v) for v in first.split(",")[:-1]]
    answer = requests.post(
        f"http://127.0.0.1:{caller.port}/predict",
        json={"records": [dict(zip(names, values, strict=True))]},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == str(version)
    scan = json.loads((bundle / "scan" / "result.json").read_text())
    assert scan["status"] == "pass", scan
    assert ADVISORY in (bundle / "scan" / "findings.json").read_text()


@pytest.fixture(scope="module")
def dispatch_run(push_run: Run, kit: Kit, caller: Caller, fake: FakeGitHub) -> Run:
    assert push_run.done.returncode == 0, push_run.tail()
    payload = {
        "inputs": {"environment": "production", "strategy": "", "release": ""},
        "ref": "refs/heads/main",
        "repository": {"full_name": REPOSITORY, "default_branch": "main"},
    }
    return run_act("workflow_dispatch", payload, kit=kit, caller=caller, fake=fake)


def test_dispatch_deploys_the_staged_release_to_production(
    dispatch_run: Run, push_run: Run, fake: FakeGitHub, caller: Caller, kit: Kit
) -> None:
    run = dispatch_run
    assert run.done.returncode == 0, run.tail()
    staged = json.loads(
        (
            push_run.artifacts / f"mlcd-{caller.project}-deploy-staging" / "release" / "result.json"
        ).read_text()
    )["details"]
    # nothing trained, built or released: only plan and deploy ran
    ran = run.kit_lines()
    assert set(ran) == {"plan", "deploy to production"}, ran
    assert sorted(p.name for p in run.artifacts.iterdir()) == [
        f"mlcd-{caller.project}-deploy-production"
    ]
    for step in ("actions/train", "actions/build", "actions/release"):
        assert step not in run.log
    bundle = run.artifacts / f"mlcd-{caller.project}-deploy-production"
    deploy = json.loads((bundle / "deploy-production" / "result.json").read_text())
    assert deploy["status"] == "pass", deploy
    assert deploy["details"]["version"] == staged["version"], deploy["details"]
    assert deploy["details"]["image"] == staged["image"], deploy["details"]
    assert any("live and healthy in staging" in r for r in deploy["reasons"]), deploy
    state = json.loads((caller.state / "production" / "state.json").read_text())
    assert state["stable"]["version"] == staged["version"], state
    [deployment] = [d for d in fake.deployments if d["environment"] == "production"]
    assert deployment["payload"]["version"] == staged["version"]
    assert [s["state"] for s in fake.statuses[deployment["id"]]] == ["in_progress", "success"]
    assert len(fake.releases) == 1  # no new release
