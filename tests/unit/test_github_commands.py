"""`mlcd github comment|release|deployment` on a made-up bundle, against the in-process fake."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from mlcd import cli
from mlcd import github as github_cmd
from mlcd.evidence import Bundle, StageResult, write_json_atomic
from mlcd.github import comment
from mlcd.tools.github import GitHub, GitHubApiError
from tests.fakes.github_api import FakeGitHub, mounted_session

TOKEN = "ghs_commandTestTokenABCDEFGHIJ012345"  # noqa: S105 - the fake's token
SHA = "0123456789abcdef0123456789abcdef01234567"


def _result(stage: str, status: str = "pass", **kw: object) -> StageResult:
    return StageResult(
        stage=stage,
        status=status,
        started=f"2026-01-01T00:00:0{len(stage) % 9}Z",
        duration_s=1.5,
        summary=f"{stage} summary",
        **kw,
    )  # type: ignore[arg-type]


def make_bundle(root: Path, *, release: bool = True) -> Bundle:
    bundle = Bundle(root)
    bundle.write(_result("lint"), "### lint ok\n")
    bundle.write(_result("test"), "")
    bundle.write(_result("train"), "")
    write_json_atomic(
        root / "train" / "model.json",
        {"task": "classification", "rows": 569, "features": [{"name": "radius"}]},
    )
    bundle.write(_result("evaluate", metrics={"accuracy": 0.95, "roc_auc": 0.99}), "")
    write_json_atomic(
        root / "evaluate" / "verdict.json",
        {
            "passed": True,
            "checks": [
                {"metric": "accuracy", "value": 0.95, "bound": 0.92, "kind": "min", "passed": True},
                {"metric": "roc_auc", "value": 0.99, "bound": 0.97, "kind": "min", "passed": True},
            ],
        },
    )
    bundle.write(
        _result(
            "build",
            details={"image": "127.0.0.1:5000/bc@sha256:" + "a" * 64, "size_bytes": 210_000_000},
        ),
        "",
    )
    (root / "scan").mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / "scan" / "sbom.cdx.json", {"bomFormat": "CycloneDX"})
    bundle.write(
        _result(
            "scan",
            metrics={"critical": 0, "high": 0, "medium": 3},
            artifacts={"sbom": "scan/sbom.cdx.json"},
        ),
        "",
    )
    if release:
        bundle.write(
            _result(
                "release", details={"version": "3", "image": "127.0.0.1:5000/bc@sha256:" + "a" * 64}
            ),
            "",
        )
    return bundle


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGitHub:
    fake = FakeGitHub(token=TOKEN)
    monkeypatch.setenv("GITHUB_SHA", SHA)
    monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv(
        "MLCD_ARTIFACTS",
        "mlcd-scan=https://github.com/a/b/actions/runs/42/artifacts/9\nmlcd-release=\n",
    )
    monkeypatch.setattr(
        github_cmd,
        "_client",
        lambda: GitHub(
            api_url=fake.api_base,
            repository=fake.repository,
            token=TOKEN,
            session=mounted_session(fake),
            sleep=lambda _s: None,
        ),
    )
    return fake


def _event(tmp_path: Path, number: int) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"number": number, "pull_request": {"number": number}}))
    return str(path)


def test_comment_is_posted_once_and_updated(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    out = tmp_path / "run"
    make_bundle(out, release=False)
    monkeypatch.setenv("GITHUB_EVENT_PATH", _event(tmp_path, 12))
    args = ["github", "comment", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    [posted] = fake.comments[12]
    body = posted["body"]
    assert body.startswith(comment.marker("breast-cancer") + "\n")
    assert "every check passed" in body
    assert "```mermaid" in body
    assert "xychart-beta" in body
    assert "| min | accuracy | 0.95 | 0.92 | ✅ |" in body
    assert "sha256:" in body
    assert "210.0 MB" in body
    assert "[mlcd-scan](https://github.com/a/b/actions/runs/42/artifacts/9)" in body
    assert "mlcd-release" not in body
    assert "https://github.com/acme/model/actions/runs/42" in body
    assert len(fake.seen("PATCH", r"/repos/acme/model/issues/comments/\d+")) == 1


def test_comment_outside_a_pull_request_is_only_written(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    make_bundle(out)
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    assert cli.main(["github", "comment", "--out", str(out)]) == 0
    assert (out / "github" / "comment.md").is_file()
    assert fake.requests == []


def test_failed_stage_heads_the_comment(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "run", release=False)
    bundle.write(_result("scan", status="fail"), "")
    text = comment.render(bundle, comment.RunInfo())
    assert "❌ blocked at **scan**" in text.splitlines()[1]


def test_release_uploads_every_asset(fake: FakeGitHub, tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "run"
    make_bundle(out)
    config = str(repo_root / "model/mlcd.yaml")
    assert cli.main(["github", "release", "--out", str(out), "--config", config]) == 0
    [release] = fake.releases
    assert release["tag_name"] == "breast-cancer-v3"
    assert release["target_commitish"] == SHA
    names = {a["name"]: a["content_type"] for a in release["assets"]}
    assert names == {
        "model-card.md": "text/markdown",
        "metrics.json": "application/json",
        "verdict.json": "application/json",
        "sbom.cdx.json": "application/vnd.cyclonedx+json",
        "evidence-3.tar.gz": "application/gzip",
    }
    archive_id = next(a["id"] for a in release["assets"] if a["name"].endswith(".tar.gz"))
    archive = tmp_path / "e.tar.gz"
    archive.write_bytes(fake.asset_content[archive_id])
    with tarfile.open(archive) as tar:
        members = tar.getnames()
    assert "mlcd-evidence/evaluate/verdict.json" in members
    assert not any("/github/" in m for m in members)
    # re-running (a retried job) neither duplicates the release nor its assets
    assert cli.main(["github", "release", "--out", str(out), "--config", config]) == 0
    assert len(fake.releases) == 1
    assert len(fake.releases[0]["assets"]) == 5


def test_release_as_mlcd_release_records_it(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path
) -> None:
    """`mlcd release` writes details.tag = the image's tag (name:version), which is no git
    tag; the GitHub release is still tagged <project>-v<version>, and its evidence asset is
    the archive `mlcd release` stored (the file whose sha256 is the evidence digest)."""
    out = tmp_path / "run"
    make_bundle(out)
    stored = out / "release" / "evidence.tar.gz"
    stored.write_bytes(b"the release's own evidence archive")
    image = "127.0.0.1:5000/bc@sha256:" + "a" * 64
    Bundle(out).write(
        _result(
            "release",
            details={"version": "0.1.1", "image": image, "tag": "127.0.0.1:5000/bc:0.1.1"},
            artifacts={"evidence": "release/evidence.tar.gz"},
        ),
        "",
    )
    config = str(repo_root / "model/mlcd.yaml")
    assert cli.main(["github", "release", "--out", str(out), "--config", config]) == 0
    [release] = fake.releases
    assert release["tag_name"] == "breast-cancer-v0.1.1"
    [archive_id] = [a["id"] for a in release["assets"] if a["name"] == "evidence-0.1.1.tar.gz"]
    assert fake.asset_content[archive_id] == stored.read_bytes()


def test_fake_refuses_a_tag_git_would_refuse(fake: FakeGitHub) -> None:
    gh = github_cmd._client()  # the fake-backed client of the fixture
    with pytest.raises(GitHubApiError, match="422") as caught:
        gh.create_release("127.0.0.1:5000/bc:0.1.1", name="x", body="", target_commitish=None)
    assert caught.value.exit_code == 2
    assert fake.releases == []


def test_release_without_a_release_stage_is_exit_2(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    make_bundle(out, release=False)
    code = cli.main(
        ["github", "release", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    )
    assert code == 2
    assert "mlcd release" in capsys.readouterr().err


def test_deployment_lifecycle(fake: FakeGitHub, tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "run"
    make_bundle(out)
    config = str(repo_root / "model/mlcd.yaml")
    base = ["github", "deployment", "staging", "--out", str(out), "--config", config]
    assert cli.main([*base, "--state", "in_progress"]) == 0
    assert cli.main([*base, "--state", "success", "--url", "http://127.0.0.1:8080"]) == 0
    [deployment] = fake.deployments
    assert deployment["environment"] == "staging"
    assert deployment["task"] == "deploy:model"
    assert deployment["payload"]["version"] == "3"
    assert deployment["ref"] == SHA
    assert [s["state"] for s in fake.statuses[deployment["id"]]] == ["in_progress", "success"]
    assert fake.statuses[deployment["id"]][1]["environment_url"] == "http://127.0.0.1:8080"


def test_deployment_to_an_unknown_environment_is_exit_2(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path
) -> None:
    out = tmp_path / "run"
    make_bundle(out)
    code = cli.main(
        [
            "github",
            "deployment",
            "qa",
            "--out",
            str(out),
            "--config",
            str(repo_root / "model/mlcd.yaml"),
        ]
    )
    assert code == 2
    assert fake.requests == []


def test_missing_token_is_exit_3(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    make_bundle(out)
    monkeypatch.setenv("GITHUB_SHA", SHA)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/model")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("MLCD_GITHUB_TOKEN", raising=False)
    code = cli.main(
        ["github", "release", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    )
    assert code == 3
    assert "GITHUB_TOKEN" in capsys.readouterr().err


def test_pull_request_number_from_event(tmp_path: Path) -> None:
    assert comment.pull_request_number(_event(tmp_path, 5)) == 5
    push = tmp_path / "push.json"
    push.write_text(json.dumps({"ref": "refs/heads/main"}))
    assert comment.pull_request_number(str(push)) is None
    assert comment.pull_request_number(None) is None


def test_very_long_comment_is_cut_to_fit(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "run")
    bundle.write(_result("lint"), "x" * 100_000)
    text = comment.render(bundle, comment.RunInfo())
    assert len(text) < 65536
    assert text.rstrip().endswith("</details>")


def test_a_pasted_marker_is_never_overwritten(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    """The comment is found by marker AND by the token's own identity: somebody else's
    comment that carries the marker stays as it is, and the PR path asks little of the API."""
    planted = fake.add_comment(
        12, comment.marker("breast-cancer") + "\nplease merge", login="mallory"
    )
    out = tmp_path / "run"
    make_bundle(out, release=False)
    monkeypatch.setenv("GITHUB_EVENT_PATH", _event(tmp_path, 12))
    args = ["github", "comment", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    before = len(fake.requests)
    assert cli.main(args) == 0
    # one listing of the comments, one creation: the installation token's identity
    # (github-actions[bot]) is known without asking (GET /user refuses such tokens)
    assert [(r.method, r.path) for r in fake.requests[before:]] == [
        ("GET", "/repos/acme/model/issues/12/comments"),
        ("POST", "/repos/acme/model/issues/12/comments"),
    ]
    assert cli.main(args) == 0
    mine, theirs = [c for c in fake.comments[12] if c["id"] != planted["id"]], planted
    assert theirs["body"] == comment.marker("breast-cancer") + "\nplease merge"
    assert len(mine) == 1
    assert mine[0]["user"]["login"] == "github-actions[bot]"
    assert len(fake.seen("PATCH", rf"/repos/acme/model/issues/comments/{mine[0]['id']}")) == 1
    assert not fake.seen("PATCH", rf"/repos/acme/model/issues/comments/{planted['id']}")


def test_a_personal_token_asks_who_it_is_once() -> None:
    fake = FakeGitHub(token="ghp_personalTokenABCDEFGHIJ0123456789")  # noqa: S106 - test token
    gh = GitHub(
        api_url=fake.api_base,
        repository=fake.repository,
        token=fake.token,
        session=mounted_session(fake),
        sleep=lambda _s: None,
    )
    fake.add_comment(3, comment.MARKER, login="github-actions[bot]")
    _, created = gh.upsert_comment(3, comment.MARKER + "\nhi", marker=comment.MARKER)
    assert created  # the bot's comment is not this token's
    _, created = gh.upsert_comment(3, comment.MARKER + "\nagain", marker=comment.MARKER)
    assert not created
    assert len(fake.seen("GET", "/user")) == 1
    assert fake.comments[3][-1]["user"]["login"] == "mlcd-ci"


def test_release_is_never_marked_latest(fake: FakeGitHub, tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "run"
    make_bundle(out)
    args = ["github", "release", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    assert cli.main(args) == 0
    [created] = fake.seen("POST", "/repos/acme/model/releases")
    assert created.json()["make_latest"] == "false"


def test_a_tag_of_another_image_is_never_published_over(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path
) -> None:
    """Two runs with one version: the second never puts its assets on the first's release."""
    out = tmp_path / "run"
    make_bundle(out)
    args = ["github", "release", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    fake.releases.append(
        {
            "id": 1,
            "tag_name": "breast-cancer-v3",
            "body": "image 127.0.0.1:5000/bc@sha256:" + "b" * 64,
            "assets": [],
            "upload_url": f"{fake.uploads_base}/repos/acme/model/releases/1/assets",
        }
    )
    assert cli.main(args) == 1
    assert fake.releases[0]["assets"] == []


def test_deployment_url_and_facts_come_from_deploy_env(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path
) -> None:
    """After `mlcd deploy ENV`, what is recorded (version, image, environment_url) is what
    `deploy-<env>/result.json` says, not `deploy/`."""
    out = tmp_path / "run"
    bundle = make_bundle(out)
    image = "127.0.0.1:5000/bc@sha256:" + "a" * 64
    bundle.write(
        _result(
            "deploy-staging",
            details={"version": "3", "image": image, "url": "http://127.0.0.1:8099"},
        ),
        "",
    )
    config = str(repo_root / "model/mlcd.yaml")
    base = ["github", "deployment", "staging", "--out", str(out), "--config", config]
    assert cli.main([*base, "--state", "success"]) == 0
    [deployment] = fake.deployments
    assert deployment["payload"]["image"] == image
    assert fake.statuses[deployment["id"]][0]["environment_url"] == "http://127.0.0.1:8099"


def test_deployment_of_a_dispatched_release_reads_the_registry(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy-only run has no release in its evidence: the deployment names the release the
    deploy will take, the newest that passed every `requires:` (production: staging)."""
    from mlcd import releases
    from mlcd.registry import DEPLOYMENTS, LocalRegistry

    registry = LocalRegistry(tmp_path / "reg")
    monkeypatch.setenv("MLCD_REGISTRY_PATH", str(registry.root))
    model = tmp_path / "m.skops"
    model.write_bytes(b"m")
    version = registry.register(model_file=model, metadata={}, metrics={}, verdict=None).version
    for number, staged in (("0.1.0", True), ("0.1.1", False)):
        image = f"127.0.0.1:5000/bc@sha256:{number[-1] * 64}"
        registry.append(version, releases.RELEASES, {"version": number, "image": image})
        if staged:
            registry.append(
                version, DEPLOYMENTS, {"env": "staging", "status": "healthy", "release": number}
            )
    out = tmp_path / "run"
    out.mkdir()
    config = str(repo_root / "model/mlcd.yaml")
    base = ["github", "deployment", "production", "--out", str(out), "--config", config]
    assert cli.main([*base, "--state", "in_progress"]) == 0
    assert cli.main([*base, "--state", "in_progress", "--release", "0.1.1"]) == 0
    first, second = fake.deployments
    assert first["payload"]["version"] == "0.1.0"  # 0.1.1 never passed staging
    assert second["payload"]["version"] == "0.1.1"  # asked for by name


def test_each_project_keeps_its_own_comment(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two projects of one repository, one named as a prefix of the other: a comment each,
    each updated in place by its own project's later runs."""
    monkeypatch.setenv("GITHUB_EVENT_PATH", _event(tmp_path, 7))
    for project in ("churn", "churn-v2", "churn", "churn-v2"):
        folder = tmp_path / project
        folder.mkdir(exist_ok=True)
        config = folder / "mlcd.yaml"
        config.write_text(
            f"version: 1\nproject: {project}\nmodel: {{task: classification, "
            "entrypoint: train.py:build_model, data: train.csv, target: y}\n"
        )
        out = folder / "run"
        make_bundle(out, release=False)
        assert cli.main(["github", "comment", "--out", str(out), "--config", str(config)]) == 0
    bodies = [c["body"] for c in fake.comments[7]]
    assert len(bodies) == 2, bodies
    assert bodies[0].startswith(comment.marker("churn") + "\n## mlcd · churn: ")
    assert bodies[1].startswith(comment.marker("churn-v2") + "\n## mlcd · churn-v2: ")
    assert len(fake.seen("PATCH", r"/repos/acme/model/issues/comments/\d+")) == 2


def test_read_only_token_skips_the_comment_with_a_notice(
    fake: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Dependabot or fork pull request's token reads but cannot write: the comment is
    skipped with a notice and the command succeeds (the job summary holds the report)."""
    fake.read_only_tokens.add(TOKEN)
    out = tmp_path / "run"
    make_bundle(out, release=False)
    monkeypatch.setenv("GITHUB_EVENT_PATH", _event(tmp_path, 5))
    args = ["github", "comment", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    assert cli.main(args) == 0
    assert fake.comments.get(5, []) == []
    assert [r.status for r in fake.seen("POST", r"/repos/acme/model/issues/5/comments")] == [403]
    printed = capsys.readouterr().out
    assert "::notice title=mlcd::no PR comment" in printed
    assert (out / "github" / "comment.md").is_file()


def test_other_refusals_of_the_comment_still_fail(
    fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    """Only GitHub's read-only refusal is skipped: a bad token is still exit 3."""
    monkeypatch.setattr(fake, "token", "ghs_someOtherToken")
    out = tmp_path / "run"
    make_bundle(out, release=False)
    monkeypatch.setenv("GITHUB_EVENT_PATH", _event(tmp_path, 5))
    args = ["github", "comment", "--out", str(out), "--config", str(repo_root / "model/mlcd.yaml")]
    assert cli.main(args) == 3


def test_deployment_final_status_says_what_the_webhooks_said(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path
) -> None:
    """The final status's description is the deploy's last event (the same words the
    webhooks got); the in-progress one keeps the plain state."""
    out = tmp_path / "run"
    bundle = make_bundle(out)
    said = "bc 3 rolled back in staging: analysis failed: canary error rate 5.2% > 1%"
    bundle.write(
        _result(
            "deploy-staging",
            details={
                "version": "3",
                "notifications": {
                    "events": [
                        {"event": "started", "summary": "bc 3: rollout to staging started"},
                        {"event": "rolled back", "summary": said},
                    ]
                },
            },
        ),
        "",
    )
    config = str(repo_root / "model/mlcd.yaml")
    base = ["github", "deployment", "staging", "--out", str(out), "--config", config]
    assert cli.main([*base, "--state", "in_progress"]) == 0
    assert cli.main([*base, "--state", "failure"]) == 0
    [deployment] = fake.deployments
    first, last = fake.statuses[deployment["id"]]
    assert first["description"].endswith("in progress")
    assert last["description"] == said[:140]


def test_a_new_deployment_retires_only_its_own_projects_previous_one(
    fake: FakeGitHub, tmp_path: Path, repo_root: Path
) -> None:
    """GitHub's auto_inactive matches the environment name only, so one project's success
    would mark another project's live deployment to the same environment inactive (and the
    github registry reads the live production deployment as the champion)."""
    client = GitHub(
        api_url=fake.api_base,
        repository=fake.repository,
        token=TOKEN,
        session=mounted_session(fake),
        sleep=lambda _s: None,
    )
    other = client.create_deployment(
        ref=SHA,
        environment="staging",
        description="other 1",
        payload={"project": "other", "version": "1"},
        production=False,
    )
    client.create_deployment_status(int(other["id"]), state="success")
    out = tmp_path / "run"
    bundle = make_bundle(out)
    config = str(repo_root / "model/mlcd.yaml")
    base = ["github", "deployment", "staging", "--out", str(out), "--config", config]
    assert cli.main([*base, "--state", "success"]) == 0
    bundle.write(
        _result(
            "release", details={"version": "4", "image": "127.0.0.1:5000/bc@sha256:" + "b" * 64}
        ),
        "",
    )
    assert cli.main([*base, "--state", "success"]) == 0
    _, first, second = fake.deployments
    assert [d["payload"]["version"] for d in (first, second)] == ["3", "4"]
    states = {d["id"]: [s["state"] for s in fake.statuses[d["id"]]] for d in fake.deployments}
    assert states[other["id"]] == ["success"]  # another project's: untouched
    assert states[first["id"]] == ["success", "inactive"]  # replaced by 4
    assert states[second["id"]] == ["success"]
    bodies = [
        r.json() for r in fake.requests if r.method == "POST" and r.path.endswith("/statuses")
    ]
    assert len(bodies) == 4, bodies  # other's success, 3's success, 4's success, 3 inactive
    assert all(body["auto_inactive"] is False for body in bodies[1:]), bodies
