"""`mlcd scan` scans the image the build recorded, whatever MLCD_IMAGE says: the workflow
sets MLCD_IMAGE (the image *name* builds use) for every job, and a standalone scan took it
as the reference to scan and failed with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.cli import build_parser
from mlcd.context import Context
from mlcd.evidence import StageResult
from mlcd.stages import scan
from tests.unit.test_config import VALID

BUILT = "127.0.0.1:5000/demo@sha256:" + "a" * 64


def _ctx(tmp_path: Path) -> Context:
    config = tmp_path / "mlcd.yaml"
    config.write_text(VALID, "utf-8")
    return Context(config_path=config, out=tmp_path / "out")


def test_mlcd_image_is_not_the_image_to_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCD_IMAGE", "ghcr.io/acme/model")
    assert build_parser().parse_args(["scan"]).image is None
    assert build_parser().parse_args(["scan", "--image", "x:1"]).image == "x:1"


def test_the_builds_record_names_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCD_IMAGE", "ghcr.io/acme/model")
    ctx = _ctx(tmp_path)
    build = StageResult(
        stage="build",
        status="pass",
        started="2026-12-02T00:00:00.000Z",
        duration_s=1.0,
        summary="built",
        details={"image": BUILT},
    )
    ctx.bundle.write(build, "")
    args = build_parser().parse_args(["scan"])
    image, why = scan._image(ctx, scan.ScanOptions(image=args.image))
    assert (image, why) == (BUILT, "")


def test_without_a_build_there_is_no_image_and_it_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCD_IMAGE", "ghcr.io/acme/model")
    image, why = scan._image(_ctx(tmp_path), scan.ScanOptions())
    assert image is None
    assert "`mlcd build` has not run" in why
