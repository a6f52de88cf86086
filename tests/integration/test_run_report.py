"""`.mlcd/report.html` in headless Chromium: the screenshot shows every part of the run.

The bundle: the example's real train + evaluate (against a champion, with its plots) and
build, scan, release and two deploys written as those stages write them
(tests/runbundle.py). The page is written by the real `mlcd report --html`; each part has
a colour nothing else on the page uses, so a render without that part loses it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlcd.runreport import SEVERITY_COLOUR, WEIGHT
from tests.integration.browser import colour_pixels, dump_dom, screenshot
from tests.integration.example_runs import Runs, mlcd
from tests.runbundle import STAGES, write_bundle, write_run_json

WIDTH, HEIGHT = 1280, 4000
PAGE_BACKGROUND = (248, 249, 250)


def rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour.removeprefix("#"), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


TEAL = rgb(WEIGHT)  # traffic on the canary, rollout timeline only
PURPLE = rgb(SEVERITY_COLOUR["CRITICAL"])  # scan severity bar and badge only
NAVY = (8, 48, 107)  # the darkest cell of the evaluation's confusion matrix (a PNG)
GREEN_BANNER = (24, 128, 56)  # the verdict of a passed run
RED_BANNER = (197, 34, 31)  # the verdict of a failed run


@dataclass(frozen=True)
class Render:
    page: Path
    png: Path


def render(runs: Runs, folder: Path, stages: list[str], *, fail_scan: bool = False) -> Render:
    """Write the bundle with these stages, run `mlcd report --html` on it, screenshot it."""
    out = folder / "run"
    write_bundle(out, stages, evaluate_from=runs.second)
    if fail_scan:
        result = out / "scan" / "result.json"
        result.write_text(result.read_text().replace('"status": "pass"', '"status": "fail"'))
    write_run_json(out, status="fail" if fail_scan else "pass")
    done = mlcd(
        "report",
        "--html",
        "--out",
        str(out),
        "--config",
        str(runs.project / "mlcd.yaml"),
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"report: {out / 'report.html'}"
    page = out / "report.html"
    return Render(page, screenshot(page, folder / "shot.png", width=WIDTH, height=HEIGHT))


@pytest.fixture(scope="module")
def full(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> Render:
    return render(runs, tmp_path_factory.mktemp("full"), list(STAGES))


def without(runs: Runs, tmp_path: Path, *removed: str) -> Render:
    return render(runs, tmp_path, [s for s in STAGES if s not in removed])


def test_the_whole_page_fits_the_screenshot(full: Render) -> None:
    pixels = np.asarray(Image.open(full.png).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    # the page ends before the screenshot does, so every part below is in it
    tail = pixels[-40:, :-20]  # the last rows, without a scrollbar
    assert (np.abs(tail - np.array(PAGE_BACKGROUND)) <= 2).all()


def test_the_dom_has_every_section(full: Render) -> None:
    dom = dump_dom(full.page)
    titles = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h2>(.*?)</h2>", dom)]
    assert [t.split(" passed")[0].strip() for t in titles] == [
        "Stages",
        "Model",
        "Security scan",
        "Image and release",
        "Rollout",
    ]
    assert "Delivered: release 0.1.1 is live in staging, production" in dom
    for text in (
        "champion v1",  # the comparison with the champion
        "141 components (CycloneDX)",  # SBOM size
        "not reachable: no TLS in the server",  # a suppression with its reason
        "366.2 MB",  # image size
        "sha256:" + "9" * 64,  # the pushed image's digest
        "#3 canary 50%",  # an interval of the staging timeline
    ):
        assert text in dom, text
    assert dom.count('aria-label="rollout timeline"') == 2
    assert 'class="pill notrun"' not in dom


def test_the_verdict_banner_is_green(full: Render, runs: Runs, tmp_path: Path) -> None:
    assert colour_pixels(full.png, GREEN_BANNER, tolerance=6) > 40000
    failed = render(runs, tmp_path, list(STAGES), fail_scan=True)
    assert colour_pixels(failed.png, RED_BANNER, tolerance=6) > 40000
    assert colour_pixels(failed.png, GREEN_BANNER, tolerance=6) < 15000  # pills only
    assert "Stopped at scan: a gate said no" in dump_dom(failed.page)


def test_the_rollout_timeline_is_drawn(full: Render, runs: Runs, tmp_path: Path) -> None:
    assert colour_pixels(full.png, TEAL, tolerance=8) > 20000
    bare = without(runs, tmp_path, "deploy-staging", "deploy-production")
    assert colour_pixels(bare.png, TEAL, tolerance=8) == 0
    # without its results, the environments are still listed (from the config): not run
    dom = dump_dom(bare.page)
    assert "did not run in this run, so there is no rollout" in dom


def test_the_scan_counts_are_drawn(full: Render, runs: Runs, tmp_path: Path) -> None:
    assert colour_pixels(full.png, PURPLE, tolerance=8) > 2000
    bare = without(runs, tmp_path, "scan")
    assert colour_pixels(bare.png, PURPLE, tolerance=8) == 0


def test_the_evaluation_plots_are_embedded(full: Render, runs: Runs, tmp_path: Path) -> None:
    assert colour_pixels(full.png, NAVY, tolerance=12) > 3000
    bare = without(runs, tmp_path, "evaluate")
    assert colour_pixels(bare.png, NAVY, tolerance=12) < 50
    assert "evaluate did not run in this run" in dump_dom(bare.page)


def test_the_page_reads_no_file_but_itself(full: Render, tmp_path: Path) -> None:
    """Moved away from the bundle, the page looks the same (the links aside)."""
    moved = tmp_path / "elsewhere" / "report.html"
    moved.parent.mkdir()
    shutil.copyfile(full.page, moved)
    shot = screenshot(moved, tmp_path / "moved.png", width=WIDTH, height=HEIGHT)
    one = np.asarray(Image.open(full.png).convert("RGB"), dtype=np.int16)
    two = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert (np.abs(one - two) > 8).any(axis=2).mean() < 0.001
