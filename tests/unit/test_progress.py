"""Progress of `mlcd run`: live spinner lines on a terminal, plain lines anywhere else."""

from __future__ import annotations

import io

import pytest

from mlcd.progress import StageProgress, fmt_seconds, is_live


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("CI", raising=False)


@pytest.mark.usefixtures("clean_env")
def test_live_only_on_a_terminal() -> None:
    assert is_live(FakeTerminal())
    assert not is_live(io.StringIO())


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("variable", ["NO_COLOR", "CI"])
def test_no_color_and_ci_turn_live_display_off(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    assert not is_live(FakeTerminal())


@pytest.mark.usefixtures("clean_env")
def test_plain_lines_have_stage_detail_and_outcome_and_no_escapes() -> None:
    stream = io.StringIO()
    progress = StageProgress(stream)
    assert not progress.live
    progress.start("lint")
    progress.update("ruff check")
    elapsed = progress.finish("fail", "2 findings")
    text = stream.getvalue()
    assert elapsed >= 0
    assert "\x1b" not in text
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "▶ lint …"
    assert lines[1] == "  lint: ruff check"
    assert lines[2].split() == ["FAILED", "lint", fmt_seconds(elapsed), "2", "findings"]


@pytest.mark.usefixtures("clean_env")
def test_live_lines_rewrite_in_place_with_colour() -> None:
    stream = FakeTerminal()
    progress = StageProgress(stream)
    assert progress.live
    progress.start("test")
    progress.update("pytest")
    progress.finish("pass", "5 passed")
    text = stream.getvalue()
    assert "\r\x1b[2K" in text
    assert "\x1b[32mpassed" in text
    assert text.endswith("5 passed\n")
    assert "pytest" not in text.split("\r\x1b[2K")[-1]  # the final line replaces the spinner


def test_no_color_wins_over_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream = FakeTerminal()
    progress = StageProgress(stream)
    progress.start("lint")
    progress.finish("error", "ruff missing")
    assert "\x1b" not in stream.getvalue()
    assert "ERROR" in stream.getvalue()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0s"), (3.25, "3.2s"), (59.9, "59.9s"), (61, "1m01s"), (3725, "62m05s")],
)
def test_fmt_seconds(seconds: float, text: str) -> None:
    assert fmt_seconds(seconds) == text
