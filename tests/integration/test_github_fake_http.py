"""The GitHub adapter over real HTTP against the fake API on 127.0.0.1 (free ports)."""

from __future__ import annotations

from pathlib import Path

from mlcd.tools.github import GitHub
from tests.fakes.github_api import serve

TOKEN = "ghs_httpTestTokenABCDEFGHIJKLMNOP0123"  # noqa: S105 - the fake's token


def test_release_upload_and_faults_over_http(tmp_path: Path) -> None:
    with serve(token=TOKEN) as fake:
        lines: list[str] = []
        gh = GitHub.from_env(
            {
                "GITHUB_API_URL": fake.api_base,
                "GITHUB_REPOSITORY": fake.repository,
                "GITHUB_TOKEN": TOKEN,
            },
            sleep=lambda _s: None,
            log=lines.append,
        )
        fake.fail_next("POST", r"/repos/acme/model/releases", "502")
        fake.fail_next("POST", r"/repos/acme/model/releases/\d+/assets", "secondary")
        release = gh.create_release("m-v1", name="m v1", body="b")
        assert release["upload_url"].startswith(fake.uploads_base)
        card = tmp_path / "card.md"
        card.write_text("# card\n")
        asset = gh.upload_asset(release, card, content_type="text/markdown")
        assert asset["state"] == "uploaded"
        upload = fake.seen("POST", r"/repos/acme/model/releases/\d+/assets")[-1]
        assert upload.host == "uploads"
        assert upload.headers["content-type"] == "text/markdown"
        assert [r.status for r in fake.requests if r.method == "POST"] == [502, 201, 403, 201]
        assert len(lines) == 2
        assert all(TOKEN not in line for line in lines)
