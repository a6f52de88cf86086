"""`mlcd report`: every stage of a run rendered as one Markdown document."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.cli import main
from mlcd.evidence import Bundle, StageResult
from mlcd.report import MARKER, render_markdown


def result(stage: str, status: str, started: str, summary: str) -> StageResult:
    return StageResult(
        stage=stage,
        status=status,  # type: ignore[arg-type]
        started=started,
        duration_s=2.345,
        summary=summary,
    )


def filled(root: Path) -> Bundle:
    bundle = Bundle(root)
    bundle.write(
        result("test", "fail", "2030-01-01T00:00:01.000Z", "1 failed | 4 passed"),
        "### ❌ test\n\n- `tests/test_x.py::test_y`\n",
    )
    bundle.write(result("lint", "pass", "2030-01-01T00:00:00.000Z", "clean\nreally"), "")
    return bundle


def test_report_has_an_overview_then_each_summary_in_run_order(tmp_path: Path) -> None:
    text = render_markdown(filled(tmp_path), title="PR checks")
    lines = text.splitlines()
    assert lines[0] == MARKER
    assert lines[1] == "## PR checks"
    assert lines[3:7] == [
        "| stage | outcome | time | summary |",
        "|---|---|---:|---|",
        "| lint | ✅ pass | 2.3s | clean really |",
        "| test | ❌ fail | 2.3s | 1 failed \\| 4 passed |",
    ]
    assert text.index("### ✅ lint: clean") < text.index("### ❌ test")
    assert "- `tests/test_x.py::test_y`" in text
    assert text.endswith("\n")


def test_report_of_an_empty_folder_says_so(tmp_path: Path) -> None:
    text = render_markdown(Bundle(tmp_path / "nothing"))
    assert f"No stage results in `{tmp_path / 'nothing'}` yet." in text


def test_report_command_prints_and_writes_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled(tmp_path / "run")
    output = tmp_path / "comment" / "body.md"
    code = main(["report", "--out", str(tmp_path / "run"), "-o", str(output), "--title", "T"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{MARKER}\n## T\n")
    assert output.read_text("utf-8") == printed
    assert (tmp_path / "run" / "report.md").read_text("utf-8") == printed
