"""The GitHub adapter against the in-process fake: paths, auth, retries, token secrecy."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.tools.github import GitHub, GitHubApiError
from tests.fakes.github_api import FakeGitHub, mounted_session

TOKEN = "ghs_unitTestTokenABCDEFGHIJKLMNOP0123"  # noqa: S105 - the fake's token


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub(token=TOKEN)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def gh(fake: FakeGitHub, waits: list[float]) -> GitHub:
    return GitHub(
        api_url=fake.api_base,
        repository=fake.repository,
        token=TOKEN,
        session=mounted_session(fake),
        sleep=waits.append,
        clock=lambda: 0.0,
    )


def test_from_env_reads_the_actions_variables(fake: FakeGitHub) -> None:
    client = GitHub.from_env(
        {
            "GITHUB_API_URL": "http://api.fake/",
            "GITHUB_REPOSITORY": "acme/model",
            "GITHUB_TOKEN": TOKEN,
        }
    )
    assert client.api_url == "http://api.fake"
    assert client.repository == "acme/model"
    assert TOKEN not in repr(client)


def test_from_env_without_token_or_repository_says_how() -> None:
    with pytest.raises(EnvironmentMissing, match="no GitHub token"):
        GitHub.from_env({"GITHUB_REPOSITORY": "acme/model"})
    with pytest.raises(UserInputError, match="GITHUB_REPOSITORY"):
        GitHub.from_env({"GITHUB_TOKEN": TOKEN})
    with pytest.raises(UserInputError, match="owner/name"):
        GitHub.from_env({"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "nope"})


def test_release_and_assets_go_to_the_uploads_host(
    gh: GitHub, fake: FakeGitHub, tmp_path: Path
) -> None:
    release = gh.create_release(
        "model-v1", name="model v1", body="notes", target_commitish="a" * 40
    )
    assert release["upload_url"].startswith(fake.uploads_base)
    card = tmp_path / "model-card.md"
    card.write_text("# card\n")
    asset = gh.upload_asset(release, card, content_type="text/markdown")
    assert asset["name"] == "model-card.md"
    upload = fake.seen("POST", r"/repos/acme/model/releases/\d+/assets")[0]
    assert upload.host == "uploads"
    assert upload.headers["content-type"] == "text/markdown"
    assert upload.query["name"] == ["model-card.md"]
    # idempotent: the same tag gives the same release, the same name replaces the asset
    again = gh.create_release("model-v1", name="x", body="y")
    assert again["id"] == release["id"]
    gh.upload_asset(again, card, content_type="text/markdown")
    assert [a["name"] for a in fake.releases[0]["assets"]] == ["model-card.md"]
    assert fake.seen("DELETE", r"/repos/acme/model/releases/assets/\d+")


def test_fake_rejects_a_bad_content_type(gh: GitHub, tmp_path: Path) -> None:
    release = gh.create_release("v2", name="v2", body="")
    blob = tmp_path / "x.bin"
    blob.write_bytes(b"1")
    with pytest.raises(GitHubApiError, match="422") as info:
        gh.upload_asset(release, blob, content_type="not a type")
    assert info.value.exit_code == 2


def test_a_502_and_a_secondary_rate_limit_are_survived(
    gh: GitHub, fake: FakeGitHub, waits: list[float]
) -> None:
    fake.fail_next("POST", r"/repos/acme/model/deployments", "502")
    fake.fail_next("POST", r"/repos/acme/model/deployments", "secondary")
    deployment = gh.create_deployment(
        ref="a" * 40,
        environment="staging",
        description="d",
        payload={"version": "1"},
        production=False,
    )
    assert deployment["environment"] == "staging"
    assert len(waits) == 2
    assert waits[1] == 1.0  # retry-after of the secondary rate limit
    assert [r.status for r in fake.requests] == [502, 403, 201]


def test_primary_rate_limit_waits_for_the_reset(
    gh: GitHub, fake: FakeGitHub, waits: list[float]
) -> None:
    fake.fail_next("GET", r"/repos/acme/model/releases", "primary")
    assert gh.releases() == []
    assert waits == [1.0]


def test_too_long_a_wait_is_an_error_not_a_hang(fake: FakeGitHub) -> None:
    gh = GitHub(
        api_url=fake.api_base,
        repository=fake.repository,
        token=TOKEN,
        session=mounted_session(fake),
        sleep=lambda _s: None,
        clock=lambda: 0.0,
        max_wait=0.5,
    )
    fake.fail_next("GET", r"/repos/acme/model/releases", "429")
    with pytest.raises(GitHubApiError, match="wait 2 s"):
        gh.releases()


def test_persistent_5xx_gives_up_with_a_hint(gh: GitHub, fake: FakeGitHub) -> None:
    for _ in range(5):
        fake.fail_next("GET", r"/repos/acme/model/releases", "502")
    with pytest.raises(GitHubApiError, match="after 5 attempts") as info:
        gh.releases()
    assert info.value.exit_code == 3


def test_the_token_never_appears_in_errors_or_logs(fake: FakeGitHub) -> None:
    lines: list[str] = []
    wrong = "ghs_wrongTokenXYZXYZXYZXYZXYZXYZ0000"
    gh = GitHub(
        api_url=fake.api_base,
        repository=fake.repository,
        token=wrong,
        session=mounted_session(fake),
        sleep=lambda _s: None,
        log=lines.append,
    )
    with pytest.raises(GitHubApiError) as info:
        gh.releases()
    text = info.value.render()
    assert "401" in text
    assert "Bad credentials" in text
    assert wrong not in text
    # even when the server echoes the token back
    assert gh.redact(f"token {wrong} leaked") == "token *** leaked"
    fake2 = FakeGitHub(token=TOKEN)
    gh2 = GitHub(
        api_url=fake2.api_base,
        repository=fake2.repository,
        token=TOKEN,
        session=mounted_session(fake2),
        sleep=lambda _s: None,
        log=lines.append,
    )
    fake2.fail_next("GET", r"/repos/acme/model/releases", "502")
    gh2.releases()
    assert lines
    assert all(TOKEN not in line for line in lines)


def test_auth_header_and_api_version(gh: GitHub, fake: FakeGitHub) -> None:
    gh.releases()
    request = fake.requests[-1]
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert "authorization" not in request.headers  # the fake never records it


def test_deployments_and_statuses(gh: GitHub, fake: FakeGitHub) -> None:
    first = gh.create_deployment(
        ref="b" * 40,
        environment="production",
        description="v1",
        payload={"version": "1"},
        production=True,
    )
    gh.create_deployment_status(first["id"], state="success", environment_url="http://x")
    second = gh.create_deployment(
        ref="c" * 40,
        environment="production",
        description="v2",
        payload={"version": "2"},
        production=True,
    )
    gh.create_deployment_status(second["id"], state="failure")
    listed = gh.deployments(environment="production")
    assert [d["payload"]["version"] for d in listed] == ["2", "1"]
    assert gh.deployment_statuses(first["id"])[0]["state"] == "success"
    with pytest.raises(GitHubApiError, match="422"):
        gh.create_deployment_status(first["id"], state="done")


def test_comment_is_created_once_then_updated(gh: GitHub, fake: FakeGitHub) -> None:
    marker = "<!-- mlcd-report -->"
    _, created = gh.upsert_comment(7, "first", marker=marker)
    comment, created_again = gh.upsert_comment(7, f"{marker}\nsecond", marker=marker)
    assert created
    assert not created_again
    assert len(fake.comments[7]) == 1
    assert comment["body"].endswith("second")


def test_pagination_follows_link_headers(gh: GitHub, fake: FakeGitHub) -> None:
    for n in range(130):
        fake.comments.setdefault(1, []).append({"id": n, "body": str(n)})
    assert len(list(gh.paginate("repos/acme/model/issues/1/comments"))) == 130


def test_wrong_repository_is_a_404_with_a_hint(fake: FakeGitHub) -> None:
    gh = GitHub(
        api_url=fake.api_base,
        repository="acme/other",
        token=TOKEN,
        session=mounted_session(fake),
        sleep=lambda _s: None,
    )
    with pytest.raises(GitHubApiError, match="404") as info:
        gh.releases()
    assert "GITHUB_REPOSITORY" in (info.value.hint or "")
