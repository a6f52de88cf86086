"""The summaries of build, release and deploy, from fixed inputs and no process.

Those stages need a Docker engine, an image registry and a router, so the golden files do
not run them: they call the code that turns what the engine, the registry and the rollout
reported (`build._Built` and the contract test's result, `release._Published`, a
`DeployOutcome` with the controller's measurements) into the stage's record, and record it
through `evidence.run_stage` as the stage would, so that `summary.md` is the file the stage
writes. Everything else a stage does (build, push, route traffic) is left out.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlcd import releases
from mlcd.config import EnvironmentSection
from mlcd.context import Context
from mlcd.evidence import StageOutcome, run_stage
from mlcd.image.contract import ContractResult
from mlcd.registry import LocalRegistry
from mlcd.rollout.controller import Controller, DeployOutcome, EnvSpec
from mlcd.rollout.state import Arm
from mlcd.rollout.targets.local import LocalTarget
from mlcd.stages import build, deploy, release
from mlcd.tools.docker import BuildOutput
from tests.mlprojects import write_project

Documents = dict[str, str]
IMAGE_ID = "sha256:" + "3" * 64
MANIFEST = "sha256:" + "9" * 64
NAME = "127.0.0.1:5000/breast-cancer"
TAG = f"{NAME}:build-333333333333"
INPUTS = {"config_sha256": "c" * 64, "git_sha": "0123456789abcdef0123456789abcdef01234567"}
ROW = "row 17 {'mean radius': 13.0, 'mean texture': 21.8}: in process 1, the image 0"
FORMS = {"records": 114, "instances": 114, "v2 columns": 114, "v2 tensor": 114}


class _Summaries:
    """One run folder of a project, the stages recorded into it."""

    def __init__(self, tmp: Path) -> None:
        config = write_project(tmp / "delivery")
        self.tmp = tmp
        self.ctx = Context(config_path=config, out=tmp / "delivery-out")

    def record(self, stage: str, outcome: StageOutcome) -> str:
        run_stage(self.ctx.bundle, stage, lambda: outcome, inputs=INPUTS)
        return (self.ctx.bundle.root / stage / "summary.md").read_text("utf-8")


def _prepared(tmp: Path, **context: Any) -> build._Prepared:
    info = {"wheels": 24, "context_bytes": 61_204_480, "model_wheels": [], "project_modules": []}
    return build._Prepared(
        model_dir=tmp / "train",
        holdout=tmp / "train" / "holdout.csv",
        meta={"name": "breast-cancer", "version": "v2"},
        engine="27.3.1",
        base="local/python:3.11-bookworm",
        folder=tmp / "build" / "context",
        context_info=info | context,
        user_dockerfile=None,
    )


def _built(*, size: int, user: str, healthcheck: bool, cached: int) -> build._Built:
    labels = {"org.opencontainers.image.version": "v2", "dev.mlcd.model.name": "breast-cancer"}
    config: dict[str, Any] = {"User": user, "Labels": labels}
    if healthcheck:
        config["Healthcheck"] = {"Test": ["CMD", "python", "-m", "mlcd.serve.health"]}
    return build._Built(
        output=BuildOutput(IMAGE_ID, "#1 [internal] load build definition\n", cached, 25),
        seconds=38.2,
        tag=TAG,
        config=config,
        labels=labels,
        size=size,
        model_version="v2",
    )


def _builds(s: _Summaries) -> Documents:
    args = argparse.Namespace(skip_contract=False)
    passed = ContractResult(
        passed=True,
        rows=114,
        agree=114,
        ready_seconds=1.16,
        health="healthy",
        user="10001:10001",
        forms=FORMS,
    )
    prep = _prepared(
        s.tmp,
        model_wheels=["xgboost==2.1.3"],
        project_modules=["features/__init__.py", "features/ratios.py"],
    )
    good = _built(size=366_242_719, user="10001:10001", healthcheck=True, cached=23)
    ok = build._write(s.ctx, args, prep, good, build._contract_verdict(passed))
    docs = {"build/summary.md": s.record("build", ok)}

    failed = ContractResult(
        passed=False,
        rows=114,
        agree=112,
        ready_seconds=2.4,
        health="unhealthy",
        user="",
        problems=[
            f"records: {ROW}",
            f"instances: {ROW}",
            "Docker health is 'unhealthy', not healthy",
            "the container runs as root (User='')",
        ],
        forms={"records": 112, "instances": 112, "v2 columns": 114},
    )
    bad = _built(size=452_118_003, user="", healthcheck=False, cached=0)
    no = build._write(s.ctx, args, _prepared(s.tmp), bad, build._contract_verdict(failed))
    docs["build-contract-failed/summary.md"] = s.record("build", no)
    return docs


def _releases(s: _Summaries) -> Documents:
    registry = LocalRegistry(s.tmp / "delivery-registry")
    evidence = s.tmp / "evidence"
    (evidence / "train").mkdir(parents=True)
    (evidence / "train" / "result.json").write_text('{"stage": "train"}\n', "utf-8")
    tarball = s.ctx.bundle.stage_dir("release") / "evidence.tar.gz"
    digest = release.evidence_tarball(evidence, tarball)
    record = releases.Release(
        version="0.1.3",
        model_version="v2",
        image=f"{NAME}@{MANIFEST}",
        image_id=IMAGE_ID,
        evidence_digest=digest,
        evidence=registry.keep_evidence("0.1.3", tarball),
        released="2030-01-01T00:06:01.000Z",
    )
    done = release._Published(
        version="0.1.3",
        model_version="v2",
        registered_how="registered the evaluated model as v2 (evaluate ran with --no-register)",
        skipped=[
            (
                f"0.1.2 (the image registry already has {NAME}:0.1.2 ({MANIFEST}), which this "
                f"model registry ({registry.location}) does not know)"
            )
        ],
        ref=f"{NAME}:0.1.3",
        manifest=MANIFEST,
        tarball=tarball,
        record=record,
    )
    return {
        "release/summary.md": s.record("release", release._write(s.ctx, registry, done)),
        "release-existing/summary.md": s.record("release", release._already(record, None)),
    }


def _measurement(phase: str, outcome: str, reasons: list[str], **metrics: Any) -> dict[str, Any]:
    """One entry of the controller's measurements (`Controller._measure`)."""
    return {
        "time": "2030-01-01T00:07:10.000Z",
        "phase": phase,
        "outcome": outcome,
        "reasons": reasons,
        "metrics": metrics,
    }


def _quiet(_message: str) -> None:
    return None


def _controller(
    s: _Summaries, env: str, port: int, measurements: list[dict[str, Any]]
) -> Controller:
    section = s.ctx.config.environments.get(env) or EnvironmentSection()
    target = LocalTarget("breast-cancer", env, port, s.tmp / "delivery-state")
    ctl = Controller(EnvSpec(project="breast-cancer", env=env, section=section), target, _quiet)
    ctl.state.stable = Arm(
        "0.1.3", f"{NAME}@{MANIFEST}", f"mlcd-breast-cancer-{env}-green", 49153, "green"
    )
    ctl.measurements = measurements
    return ctl


def _deploys(s: _Summaries) -> Documents:
    gates = [
        f"release 0.1.3 exists with image {NAME}@{MANIFEST}",
        "evaluation verdict passed (evaluate/verdict.json)",
        "scan passed (scan/result.json)",
    ]
    canary = [
        _measurement(
            "canary 10%",
            "inconclusive",
            ["too little traffic: 48 of 100 requests on the canary in this step"],
            canary_requests=48,
        ),
        _measurement(
            "canary 10%",
            "pass",
            [
                (
                    "error-rate increase ≤ 1.00% (upper bound 0.42%, error rate canary 1/101 "
                    "(0.99%) vs stable 2/905 (0.22%))"
                ),
                "p99 latency within 50% (+5 ms) of stable: at most 11 ms against at least 9.1 ms",
            ],
            canary_requests=101,
        ),
        _measurement(
            "canary 50%",
            "pass",
            ["predictions: PSI 0.012, at most 0.034 (limit 0.2)"],
            canary_requests=352,
        ),
    ]
    staging = _controller(s, "staging", 8081, canary)
    promoted = DeployOutcome("promoted", "0.1.3 is live in staging (canary); 0.1.2 retired")
    details = {
        "env": "staging",
        "version": "0.1.3",
        "image": f"{NAME}@{MANIFEST}",
        "strategy": "canary",
        "target": "local",
    }
    docs = {
        "deploy-staging/summary.md": s.record(
            "deploy-staging", deploy._outcome("deploy-staging", staging, promoted, gates, details)
        )
    }

    why = "2 failed measurement(s) (failure-limit 1)"
    switch = [
        _measurement(
            "preview",
            "pass",
            ["error-rate increase ≤ 1.00% (upper bound 0.31%)"],
            canary_requests=210,
        ),
        _measurement(
            "after switch",
            "fail",
            ["canary error rate 9/120 (7.50%) is above max-error-rate 1.00%"],
            canary_requests=120,
        ),
        _measurement(
            "after switch",
            "error",
            ["metrics: unreadable line 'mlcd_requests_total | 12' from the new container"],
        ),
    ]
    production = _controller(s, "production", 8082, switch)
    back = DeployOutcome(
        "rolled back", f"switched back to 0.1.2 after the switch: {why}", reasons=[why]
    )
    details = {**details, "env": "production", "strategy": "blue-green"}
    notes = [*gates, "0.1.3 was live and healthy in staging"]
    docs["deploy-production/summary.md"] = s.record(
        "deploy-production",
        deploy._outcome("deploy-production", production, back, notes, details),
    )
    return docs


def produce(run_tmp: Path) -> Documents:
    """The summaries of build, release and deploy, by their golden paths."""
    s = _Summaries(run_tmp)
    return {**_builds(s), **_releases(s), **_deploys(s)}
