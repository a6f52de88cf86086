"""Release versions: taken atomically, never overwritten; the default release of a deploy."""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from mlcd import releases
from mlcd.config import load_config
from mlcd.errors import GateFailed, UserInputError
from mlcd.registry import DEPLOYMENTS, LocalRegistry, backend_of
from mlcd.stages import release as release_stage
from tests.mlprojects import write_project


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "reg")


def _model(registry: LocalRegistry, tmp_path: Path, fp: str) -> str:
    path = tmp_path / f"{fp}.skops"
    path.write_bytes(fp.encode())
    return registry.register(
        model_file=path, metadata={"fingerprint": fp}, metrics={}, verdict={"passed": True}
    ).version


def _release(registry: LocalRegistry, model: str, version: str, *, staged: bool) -> None:
    image = f"127.0.0.1:5000/x@sha256:{version.replace('.', '') * 16}"[:86]
    registry.append(
        model,
        releases.RELEASES,
        {"version": version, "image": image, "image_id": "sha256:" + version, "released": "t"},
    )
    if staged:
        registry.append(
            model, DEPLOYMENTS, {"env": "staging", "status": "healthy", "release": version}
        )


def test_a_version_is_claimed_once_even_by_threads(registry: LocalRegistry) -> None:
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(registry.claim_release("0.1.0", commit="c")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert registry.claim_release("0.1.1", commit="c") is True


class _Ctx:
    """What _take_version reads of a Context: the project's folder."""

    def __init__(self, root: Path) -> None:
        self.loaded = argparse.Namespace(root=root)


def test_the_loser_takes_the_next_version(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release_stage.oci, "tag_digest", lambda _name, _tag: None)
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    ctx: Any = _Ctx(tmp_path)
    # another release job claimed 0.1.0 a moment ago and has not recorded it yet
    assert registry.claim_release("0.1.0", commit="b" * 40)
    version, skipped = release_stage._take_version(ctx, registry, "img", [], None)
    assert version == "0.1.1"
    assert skipped == [f"0.1.0 (another release took 0.1.0 first ({registry.location}))"]
    # an explicit version that is taken is an error, never an overwrite
    with pytest.raises(UserInputError, match=r"another release took 0\.1\.1 first"):
        release_stage._take_version(ctx, registry, "img", [], "0.1.1")


def test_an_image_tag_the_registry_does_not_know_is_skipped(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tags = {"0.1.0": "sha256:" + "e" * 64}
    monkeypatch.setattr(release_stage.oci, "tag_digest", lambda _name, tag: tags.get(tag))
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    ctx: Any = _Ctx(tmp_path)
    version, skipped = release_stage._take_version(ctx, registry, "img", [], None)
    assert version == "0.1.1"
    assert "the image registry already has img:0.1.0" in skipped[0]


def _abandoned_claim(registry: LocalRegistry, version: str, **over: Any) -> None:
    """The claim of a release process that is gone (a pid no process has, this host)."""
    folder = registry.root / "releases" / version
    folder.mkdir(parents=True)
    claim = {"version": version, "commit": "b" * 40, "pid": 2**22 + 1, "start": "1"}
    (folder / "claim.json").write_text(json.dumps({**claim, "host": socket.gethostname(), **over}))


def test_a_version_an_interrupted_release_pushed_is_resumed_only_for_that_image(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "sha256:" + "e" * 64
    tags = {"0.1.0": digest}
    monkeypatch.setattr(release_stage.oci, "tag_digest", lambda _name, tag: tags.get(tag))
    pushed = {"sha256:this": {"RepoDigests": [f"img@{digest}"]}, "sha256:other": {}}
    monkeypatch.setattr(release_stage.docker, "inspect_image", pushed.get)
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    ctx: Any = argparse.Namespace(loaded=argparse.Namespace(root=tmp_path), progress=print)
    # without a claim in this registry the tag is someone else's, even for this image
    version, _ = release_stage._take_version(ctx, registry, "img", [], None, image_id="sha256:this")
    assert version == "0.1.1"
    # claimed here by a process that is gone, pushed, never recorded: another image skips it
    other = LocalRegistry(tmp_path / "other")
    _abandoned_claim(other, "0.1.0")
    version, skipped = release_stage._take_version(
        ctx, other, "img", [], None, image_id="sha256:other"
    )
    assert version == "0.1.1"
    assert "the image registry already has img:0.1.0" in skipped[0]
    # this image takes it over, and the claim is this process's now
    version, skipped = release_stage._take_version(
        ctx, other, "img", [], None, image_id="sha256:this"
    )
    assert (version, skipped) == ("0.1.0", [])
    claim = json.loads((other.root / "releases" / "0.1.0" / "claim.json").read_text())
    assert (claim["pid"], claim["commit"]) == (os.getpid(), "a" * 40)
    # now held by a running process (this one): nobody takes it over
    assert not other.reclaim_release("0.1.0", commit="c" * 40)


def test_a_claim_whose_process_is_gone_with_nothing_pushed_is_taken_over(
    registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release_stage.oci, "tag_digest", lambda _name, _tag: None)
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    ctx: Any = _Ctx(tmp_path)
    _abandoned_claim(registry, "0.1.0")
    _abandoned_claim(registry, "0.1.1", host="another-runner")  # cannot tell: never taken
    _abandoned_claim(registry, "0.1.2", start=None, host=None)  # an older claim: pid only
    assert release_stage._take_version(ctx, registry, "img", [], None) == ("0.1.0", [])
    known = [releases.Release("0.1.0", "v1", "img@sha256:1", "sha256:1", "", "", "t")]
    version, skipped = release_stage._take_version(ctx, registry, "img", known, None)
    assert version == "0.1.3"
    assert [s.split(" ", 1)[0] for s in skipped] == ["0.1.1", "0.1.2"]


def test_the_default_release_is_the_newest_that_passed_requires(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    first, second = _model(registry, tmp_path, "a"), _model(registry, tmp_path, "b")
    _release(registry, first, "0.1.0", staged=True)
    _release(registry, second, "0.1.1", staged=True)
    _release(registry, second, "0.1.2", staged=False)
    assert releases.default_version(registry, []) == "0.1.2"
    assert releases.default_version(registry, ["staging"]) == "0.1.1"
    assert releases.default_version(registry, ["staging", "qa"]) is None


def test_the_registry_backend_is_github_inside_actions(tmp_path: Path) -> None:
    path = write_project(tmp_path / "p")
    text = path.read_text()
    assert "backend: local" in text
    path.write_text(text.replace("backend: local", "backend: auto"))
    loaded = load_config(path)
    assert loaded.config.registry.backend == "auto"
    assert backend_of(loaded, {}) == "local"
    assert backend_of(loaded, {"GITHUB_ACTIONS": "true"}) == "local"  # no token: no API
    assert backend_of(loaded, {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "t"}) == "github"


def test_a_deploy_in_a_fresh_folder_gets_the_releases_evidence(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "holdout.csv").write_text("a,y\n1,0\n")
    (run / "evaluate").mkdir()
    (run / "evaluate" / "verdict.json").write_text('{"passed": true}')
    (run / "build" / "context").mkdir(parents=True)
    (run / "build" / "context" / "big.whl").write_bytes(b"w")
    tarball = tmp_path / "evidence.tar.gz"
    digest = release_stage.evidence_tarball(run, tarball)
    model = _model(registry, tmp_path, "a")
    registry.append(
        model,
        releases.RELEASES,
        {"version": "0.1.0", "image": "i", "evidence": str(tarball), "evidence_digest": digest},
    )
    fresh = tmp_path / "fresh"
    (fresh / "github").mkdir(parents=True)
    assert releases.restore_evidence(registry, "0.1.0", fresh) == ["evaluate", "train"]
    assert (fresh / "train" / "holdout.csv").read_text() == "a,y\n1,0\n"
    assert not (fresh / "build").exists()  # the build context is not in the evidence
    # a folder that has its own run keeps it
    (fresh / "train" / "holdout.csv").write_text("mine")
    assert releases.restore_evidence(registry, "0.1.0", fresh) == []
    assert (fresh / "train" / "holdout.csv").read_text() == "mine"
    # an archive that is not the recorded one is refused
    tarball.write_bytes(tarball.read_bytes() + b"x")
    with pytest.raises(GateFailed, match="does not match its recorded digest"):
        releases.restore_evidence(registry, "0.1.0", tmp_path / "other")


class _AssetRegistry(LocalRegistry):
    """The `github` backend's shape: the evidence is a GitHub release's asset, and the path
    the release recorded is the release job's run folder, which a later job does not have."""

    def __init__(self, root: Path, assets: dict[str, bytes]) -> None:
        super().__init__(root)
        self.assets = assets

    def release_asset(self, model_version: str, name: str) -> bytes | None:
        assert model_version
        return self.assets.get(name)


def test_a_dispatch_reads_the_scan_and_verdict_from_the_releases_asset(tmp_path: Path) -> None:
    """A deploy of an existing release in a fresh job (workflow_dispatch): the scan result is
    only in the evidence bundle, which only the registry's asset holds."""
    from mlcd.evidence import Bundle
    from mlcd.rollout import gates

    run = tmp_path / "run"
    (run / "evaluate").mkdir(parents=True)
    (run / "evaluate" / "verdict.json").write_text('{"passed": true}')
    (run / "scan").mkdir()
    (run / "scan" / "result.json").write_text('{"stage": "scan", "status": "pass"}')
    tarball = tmp_path / "evidence.tar.gz"
    digest = release_stage.evidence_tarball(run, tarball)
    registry = _AssetRegistry(tmp_path / "reg", {"evidence-0.1.0.tar.gz": tarball.read_bytes()})
    model = _model(registry, tmp_path, "a")
    gone = str(tmp_path / "release-job" / "evidence.tar.gz")  # not on this machine
    registry.append(
        model,
        releases.RELEASES,
        {"version": "0.1.0", "image": "i", "evidence": gone, "evidence_digest": digest},
    )
    archive = gates._evidence_of(registry, "0.1.0", gone)
    assert archive == tarball.read_bytes()
    fresh = Bundle(tmp_path / "fresh")
    evaluate, _, scan, source = gates._gate_results(
        fresh, registry.get(model), from_bundle=False, evidence=gone, archive=archive
    )
    assert (evaluate, scan) == (True, True)
    assert source.startswith("the release's evidence bundle")
    # without the asset the registry has no scan result: the gate cannot pass
    registry.assets.clear()
    assert gates._evidence_of(registry, "0.1.0", gone) is None
    # an asset that is not the recorded archive is refused
    registry.assets["evidence-0.1.0.tar.gz"] = tarball.read_bytes() + b"x"
    with pytest.raises(GateFailed, match="does not match its recorded digest"):
        gates._evidence_of(registry, "0.1.0", gone)
