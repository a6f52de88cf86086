"""The workflow's `image` input reaches the config as MLCD_IMAGE."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.config import load_config


def test_mlcd_image_overrides_image_name(monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    loaded = load_config(repo_root / "model/mlcd.yaml")
    monkeypatch.delenv("MLCD_IMAGE", raising=False)
    assert loaded.config.image_name == "127.0.0.1:5000/breast-cancer"
    monkeypatch.setenv("MLCD_IMAGE", "ghcr.io/acme/model")
    assert loaded.config.image_name == "ghcr.io/acme/model"
    monkeypatch.setenv("MLCD_IMAGE", "")
    assert loaded.config.image_name == "127.0.0.1:5000/breast-cancer"
