"""The local model registry: immutable versions, attachments, aliases, lookups."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mlcd.config import load_config
from mlcd.errors import GateFailed, UserInputError
from mlcd.registry import (
    CHAMPION,
    DEPLOYMENTS,
    IMAGE_DIGEST,
    LocalRegistry,
    local_path,
    open_registry,
)
from tests.mlprojects import write_project


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "reg")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.skops"
    path.write_bytes(b"model bytes")
    return path


def _register(registry: LocalRegistry, model_file: Path, fp: str = "fp1", **kw: object):
    return registry.register(
        model_file=model_file,
        metadata={"fingerprint": fp, "name": "demo"},
        metrics={"accuracy": 0.9},
        verdict={"passed": True, "checks": []},
        **kw,  # type: ignore[arg-type]
    )


def test_versions_are_numbered_and_kept(registry: LocalRegistry, model_file: Path) -> None:
    assert registry.latest() is None
    assert registry.versions() == []
    first = _register(registry, model_file)
    second = _register(registry, model_file, "fp2")
    assert (first.version, second.version) == ("v1", "v2")
    assert [v.version for v in registry.versions()] == ["v1", "v2"]
    assert registry.latest().version == "v2"  # type: ignore[union-attr]
    got = registry.get("v1")
    assert got.metrics == {"accuracy": 0.9}
    assert got.verdict == {"passed": True, "checks": []}
    assert got.metadata["name"] == "demo"
    assert got.files == ["model.skops"]
    stored = registry.root / "versions/v1/model.skops"
    assert stored.read_bytes() == b"model bytes"
    assert not stored.stat().st_mode & stat.S_IWUSR  # read-only


def test_extra_files_are_stored(registry: LocalRegistry, model_file: Path, tmp_path: Path) -> None:
    card = tmp_path / "card.md"
    card.write_text("# card")
    version = _register(registry, model_file, files={"model_card.md": card})
    assert version.files == ["model.skops", "model_card.md"]
    assert registry.version_file("v1", "model_card.md").read_text() == "# card"
    with pytest.raises(UserInputError):
        _register(registry, model_file, files={"record.json": card})


def test_unknown_version(registry: LocalRegistry, model_file: Path) -> None:
    _register(registry, model_file)
    with pytest.raises(UserInputError, match="has no version v9") as caught:
        registry.get("v9")
    assert "v1" in (caught.value.hint or "")
    with pytest.raises(UserInputError, match="not a model version"):
        registry.get("../v1")


def test_attach_never_overwrites(registry: LocalRegistry, model_file: Path) -> None:
    _register(registry, model_file)
    digest = "127.0.0.1:5000/demo@sha256:" + "ab" * 32
    registry.attach("v1", IMAGE_DIGEST, digest)
    registry.attach("v1", IMAGE_DIGEST, digest)  # the same value again is fine
    with pytest.raises(UserInputError, match="never overwritten"):
        registry.attach("v1", IMAGE_DIGEST, "sha256:" + "cd" * 32)
    got = registry.get("v1")
    assert got.image_digest == digest
    assert got.metrics == {"accuracy": 0.9}  # attachments never touch the record
    registry.append("v1", DEPLOYMENTS, {"env": "staging", "at": "now"})
    registry.append("v1", DEPLOYMENTS, {"env": "production", "at": "later"})
    assert [d["env"] for d in registry.get("v1").attachments[DEPLOYMENTS]] == [
        "staging",
        "production",
    ]
    with pytest.raises(UserInputError, match="not a list"):
        registry.append("v1", IMAGE_DIGEST, "x")


def test_lookups(registry: LocalRegistry, model_file: Path) -> None:
    _register(registry, model_file, "same")
    _register(registry, model_file, "other")
    _register(registry, model_file, "same")
    assert registry.find_by_fingerprint("same").version == "v3"  # type: ignore[union-attr]
    assert registry.find_by_fingerprint("none") is None
    registry.attach("v2", IMAGE_DIGEST, "reg/demo@sha256:" + "ef" * 32)
    assert registry.find_by_image_digest("sha256:" + "ef" * 32).version == "v2"  # type: ignore[union-attr]
    assert registry.find_by_image_digest("EF" * 32).version == "v2"  # type: ignore[union-attr]
    assert registry.find_by_image_digest("sha256:" + "00" * 32) is None


def test_aliases_and_history(registry: LocalRegistry, model_file: Path) -> None:
    _register(registry, model_file)
    _register(registry, model_file, "fp2")
    assert registry.alias(CHAMPION) is None
    registry.set_alias(CHAMPION, "v1")
    registry.set_alias(CHAMPION, "v2")
    assert registry.aliases() == {CHAMPION: "v2"}
    assert registry.alias(CHAMPION).version == "v2"  # type: ignore[union-attr]
    assert [h["version"] for h in registry.alias_history(CHAMPION)] == ["v1", "v2"]
    with pytest.raises(UserInputError):
        registry.set_alias(CHAMPION, "v7")
    with pytest.raises(UserInputError):
        registry.set_alias("bad name!", "v1")


def test_a_changed_model_file_is_detected(registry: LocalRegistry, model_file: Path) -> None:
    _register(registry, model_file)
    stored = registry.root / "versions/v1/model.skops"
    assert registry.model_file("v1", registry.root) == stored
    stored.chmod(0o644)
    stored.write_bytes(b"swapped")
    with pytest.raises(GateFailed, match="has changed since it was registered"):
        registry.model_file("v1", registry.root)


def test_record_is_plain_json(registry: LocalRegistry, model_file: Path) -> None:
    _register(registry, model_file)
    record = json.loads((registry.root / "versions/v1/record.json").read_text())
    assert record["version"] == "v1"
    assert len(record["model_sha256"]) == 64


def test_path_from_config_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    loaded = load_config(write_project(tmp_path / "p", registry="models/reg"))
    assert local_path(loaded) == (tmp_path / "p/models/reg").resolve()
    monkeypatch.setenv("MLCD_REGISTRY_PATH", str(tmp_path / "elsewhere"))
    assert local_path(loaded) == (tmp_path / "elsewhere").resolve()
    opened = open_registry(loaded)
    assert isinstance(opened, LocalRegistry)
    assert opened.location == str((tmp_path / "elsewhere").resolve())
