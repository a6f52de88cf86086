"""The GitHub registry backend against the in-process fake API."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.errors import GateFailed, UserInputError
from mlcd.registry import CHAMPION, IMAGE_DIGEST
from mlcd.registry.github import GitHubRegistry
from mlcd.tools.github import GitHub
from tests.fakes.github_api import FakeGitHub, mounted_session

TOKEN = "ghs_registryTestTokenABCDEFGHIJ0123"  # noqa: S105 - the fake's token


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub(token=TOKEN)


@pytest.fixture
def registry(fake: FakeGitHub) -> GitHubRegistry:
    gh = GitHub(
        api_url=fake.api_base,
        repository=fake.repository,
        token=TOKEN,
        session=mounted_session(fake),
        sleep=lambda _s: None,
    )
    return GitHubRegistry(gh, "bc")


def _model(tmp_path: Path, content: bytes = b"model-bytes") -> Path:
    path = tmp_path / "model.skops"
    path.write_bytes(content)
    return path


def test_register_get_and_list(registry: GitHubRegistry, fake: FakeGitHub, tmp_path: Path) -> None:
    first = registry.register(
        model_file=_model(tmp_path),
        metadata={"fingerprint": "f1"},
        metrics={"accuracy": 0.9},
        verdict={"passed": True},
    )
    second = registry.register(
        model_file=_model(tmp_path, b"other"), metadata={}, metrics={"accuracy": 0.95}, verdict=None
    )
    assert (first.version, second.version) == ("v1", "v2")
    assert [r["tag_name"] for r in fake.releases] == ["bc-v1", "bc-v2"]
    assert [v.version for v in registry.versions()] == ["v1", "v2"]
    assert registry.get("v1").metrics == {"accuracy": 0.9}
    assert registry.find_by_fingerprint("f1") is not None
    downloaded = registry.model_file("v2", tmp_path / "work")
    assert downloaded.read_bytes() == b"other"
    with pytest.raises(UserInputError, match="no version v9"):
        registry.get("v9")


def test_a_tampered_model_is_refused(
    registry: GitHubRegistry, fake: FakeGitHub, tmp_path: Path
) -> None:
    registry.register(model_file=_model(tmp_path), metadata={}, metrics={}, verdict=None)
    asset_id = fake.releases[0]["assets"][0]["id"]
    fake.asset_content[asset_id] = b"evil"
    with pytest.raises(GateFailed, match="sha256"):
        registry.model_file("v1", tmp_path / "work")


def test_attachments_are_set_once(registry: GitHubRegistry, tmp_path: Path) -> None:
    registry.register(model_file=_model(tmp_path), metadata={}, metrics={}, verdict=None)
    registry.attach("v1", IMAGE_DIGEST, "img@sha256:" + "a" * 64)
    registry.attach("v1", IMAGE_DIGEST, "img@sha256:" + "a" * 64)  # same value: fine
    with pytest.raises(UserInputError, match="never changed"):
        registry.attach("v1", IMAGE_DIGEST, "img@sha256:" + "b" * 64)
    registry.append("v1", "deployments", {"env": "staging"})
    version = registry.append("v1", "deployments", {"env": "production"})
    assert len(version.attachments["deployments"]) == 2
    assert registry.find_by_image_digest("sha256:" + "a" * 64) is not None


def test_champion_is_the_latest_successful_production_deployment(
    registry: GitHubRegistry, tmp_path: Path
) -> None:
    for _ in range(3):
        registry.register(model_file=_model(tmp_path), metadata={}, metrics={}, verdict=None)
    gh = registry.gh
    assert registry.alias(CHAMPION) is None

    def deploy(version: str, environment: str, state: str) -> None:
        made = gh.create_deployment(
            ref="a" * 40,
            environment=environment,
            description=version,
            payload={"project": "bc", "version": version},
            production=environment == "production",
        )
        gh.create_deployment_status(made["id"], state="in_progress")
        gh.create_deployment_status(made["id"], state=state)

    deploy("v1", "production", "success")
    deploy("v3", "staging", "success")  # not production
    deploy("v2", "production", "failure")  # failed: v1 stays live
    champion = registry.alias(CHAMPION)
    assert champion is not None
    assert champion.version == "v1"
    deploy("v2", "production", "success")
    assert registry.aliases() == {CHAMPION: "v2"}
    assert [h["version"] for h in registry.alias_history(CHAMPION)] == ["v1", "v2"]
    registry.set_alias(CHAMPION, "v2")  # follows the deployment: nothing to store
    with pytest.raises(UserInputError, match="no alias"):
        registry.set_alias("candidate", "v2")


def test_a_release_version_is_taken_once(registry: GitHubRegistry, fake: FakeGitHub) -> None:
    """claim_release is the tag `<project>-v<version>` created through the API: GitHub
    refuses an existing ref, so the second taker learns it lost and moves on."""
    commit = "c" * 40
    assert registry.claim_release("0.1.0", commit=commit) is True
    assert registry.claim_release("0.1.0", commit="d" * 40) is False
    assert registry.claim_release("0.1.1", commit=commit) is True
    assert fake.refs == {"refs/tags/bc-v0.1.0": commit, "refs/tags/bc-v0.1.1": commit}
    with pytest.raises(UserInputError, match="full commit SHA"):
        registry.claim_release("0.1.2", commit="unknown")


def test_the_registry_release_is_not_latest(
    registry: GitHubRegistry, fake: FakeGitHub, tmp_path: Path
) -> None:
    registry.register(model_file=_model(tmp_path), metadata={}, metrics={}, verdict=None)
    [created] = fake.seen("POST", "/repos/acme/model/releases")
    assert created.json()["make_latest"] == "false"


def test_one_command_lists_the_releases_once(
    registry: GitHubRegistry, fake: FakeGitHub, tmp_path: Path
) -> None:
    from mlcd import releases

    for n in range(3):
        version = registry.register(
            model_file=_model(tmp_path, f"m{n}".encode()), metadata={}, metrics={}, verdict=None
        ).version
        registry.append(version, releases.RELEASES, {"version": f"0.1.{n}", "image": f"i{n}"})
    fresh = GitHubRegistry(registry.gh, "bc")  # a new command
    before = len(fake.requests)
    assert [r.version for r in releases.all_releases(fresh)] == ["0.1.0", "0.1.1", "0.1.2"]
    assert releases.newest_passing(fresh, []) is not None
    assert fresh.get("v2").attachments[releases.RELEASES][0]["version"] == "0.1.1"
    calls = [(r.method, r.path) for r in fake.requests[before:]]
    assert calls.count(("GET", "/repos/acme/model/releases")) == 1, calls
    downloads = [c for c in calls if c[1].startswith("/repos/acme/model/releases/assets/")]
    assert len(downloads) == 3, calls  # each version's attachments once
    assert len(calls) == 4, calls
