"""`mlcd train && mlcd evaluate` through the real CLI, and the reports in headless Chromium.

One session-scoped run of the example project (twice, the second against a champion; the
`runs` fixture) feeds every test here; Mermaid comes from the npm registry (tests/js, `npm ci`).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.browser import colour_pixels, dump_dom, screenshot
from tests.integration.example_runs import Runs, mlcd

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"


def test_two_runs_give_identical_metrics(runs: Runs) -> None:
    one = json.loads((runs.first / "evaluate/result.json").read_text())
    two = json.loads((runs.second / "evaluate/result.json").read_text())
    assert one["status"] == two["status"] == "pass"
    assert one["metrics"] == two["metrics"]
    assert one["inputs"]["git_sha"]
    verdict = json.loads((runs.second / "evaluate/verdict.json").read_text())
    assert verdict["comparison"]["champion"] == "v1"
    roc = next(r for r in verdict["comparison"]["rows"] if r["metric"] == "roc_auc")
    assert roc["difference"] == 0.0
    print(f"\ntrain + evaluate on the example: {runs.seconds:.1f}s")


def test_json_output_and_exit_code_of_a_failed_gate(runs: Runs, tmp_path: Path) -> None:
    config = runs.project / "mlcd.yaml"
    strict = config.read_text().replace("accuracy: {min: 0.92}", "accuracy: {min: 0.9999}")
    (runs.project / "strict.yaml").write_text(strict)
    env = {**os.environ, "MLCD_REGISTRY_PATH": str(tmp_path / "registry")}
    args = ["--config", str(runs.project / "strict.yaml"), "--out", str(tmp_path / "out")]
    assert mlcd("train", *args, env=env).returncode == 0
    done = mlcd("evaluate", *args, "--format", "json", env=env)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "fail"
    assert any("fails ≥ 0.9999" in r for r in result["reasons"])
    assert "Traceback" not in done.stderr


def test_report_html_shows_the_plots_in_chromium(runs: Runs, tmp_path: Path) -> None:
    page = runs.second / "evaluate/report.html"
    shot = screenshot(page, tmp_path / "report.png")
    # the candidate's curves are matplotlib blue, the champion's orange, the confusion
    # matrix's darkest cell navy: none of these colours is in the page's text or tables
    assert colour_pixels(shot, (31, 119, 180)) > 400
    assert colour_pixels(shot, (255, 127, 14)) > 400
    assert colour_pixels(shot, (8, 48, 107)) > 2000
    # the same page without its images has none of them: the pixels come from the plots
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'<img src="data:image/png;base64,[^"]*"', "<img", page.read_text()))
    assert colour_pixels(screenshot(bare, tmp_path / "bare.png"), (31, 119, 180)) < 50


@pytest.fixture(scope="session")
def mermaid_js() -> Path:
    script = JS / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
    if not script.is_file():
        npm = shutil.which("npm")
        assert npm, "npm is not installed (Node.js 18+ with npm is needed for this test)"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(JS)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    assert script.is_file()
    return script


def _render(chart: str, script: Path, folder: Path) -> str:
    page = folder / "chart.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<script src='{script.as_uri()}'></script></head><body>"
        f"<pre class='mermaid'>{html.escape(chart)}</pre><div id='status'>pending</div>"
        "<script>mermaid.initialize({startOnLoad: false});"
        "mermaid.run({querySelector: '.mermaid'})"
        ".then(() => { document.getElementById('status').textContent = 'rendered'; })"
        ".catch(e => { document.getElementById('status').textContent = 'error: ' + e; });"
        "</script></body></html>"
    )
    return dump_dom(page)


def _chart(summary: Path) -> str:
    found = re.search(r"```mermaid\n(.*?)```", summary.read_text(), re.S)
    assert found, "no Mermaid block in the summary"
    return found.group(1)


def test_mermaid_chart_renders(runs: Runs, mermaid_js: Path, tmp_path: Path) -> None:
    chart = _chart(runs.second / "evaluate/summary.md")
    dom = _render(chart, mermaid_js, tmp_path)
    assert 'id="status">rendered<' in dom, re.findall(r'id="status">[^<]*', dom)
    assert 'aria-roledescription="xychart"' in dom
    bars = re.search(r'<g class="bar-plot-0">(.*?)</g>', dom, re.S)
    assert bars is not None
    assert bars.group(1).count("<rect") == 5  # accuracy, precision, recall, f1, roc_auc
    assert 'class="line-plot-1"' in dom  # the champion's line
    assert "candidate (bars) vs champion v1 (line)" in dom


def test_a_broken_chart_is_caught(mermaid_js: Path, tmp_path: Path) -> None:
    dom = _render("xychart-beta\n    bar [0.9, oops]\n", mermaid_js, tmp_path)
    assert 'id="status">error' in dom
