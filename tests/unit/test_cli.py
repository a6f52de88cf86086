"""The CLI: help with an example on every command, exit codes, tracebacks only with --verbose."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mlcd import __version__, cli
from mlcd.cli import COMMANDS, build_parser, main
from mlcd.context import Command
from mlcd.errors import EnvironmentMissing, GateFailed, UserInputError

NAMES = [command.name for command in COMMANDS]


def help_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_command_with_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_text(["--help"], capsys)
    for name in NAMES:
        assert f"\n    {name} " in text
    assert "example:\n  mlcd run --config model/mlcd.yaml" in text
    assert "exit codes:" in text


@pytest.mark.parametrize("name", NAMES)
def test_every_command_help_explains_it_with_an_example(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_text([name, "--help"], capsys)
    assert text.startswith(f"usage: mlcd {name} ")
    examples = text[text.index("example:\n") :].splitlines()[1:]
    assert examples[0].startswith(f"  mlcd {name}")
    for option in ("--config", "--out", "--format", "--verbose"):
        assert option in text
    assert "  3  the environment lacks something" in text


def test_commands_are_unique_and_complete() -> None:
    assert len(NAMES) == len(set(NAMES))
    assert {"validate", "lint", "test", "run", "report"} <= set(NAMES)
    for command in COMMANDS:
        assert command.help
        assert command.description
        assert command.example.startswith(f"mlcd {command.name}")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert help_text(["--version"], capsys).strip() == f"mlcd {__version__}"


def test_no_command_and_unknown_command_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in ([], ["deploy-everything"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "invalid choice: 'deploy-everything'" in capsys.readouterr().err


def test_common_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCD_CONFIG", "conf/x.yaml")
    monkeypatch.setenv("MLCD_OUT", "evidence")
    monkeypatch.setenv("MLCD_FORMAT", "json")
    args = build_parser().parse_args(["validate"])
    assert args.config == Path("conf/x.yaml")
    assert args.out == Path("evidence")
    assert args.format == "json"


def fake_command(error: BaseException) -> Command:
    def run(_ctx: object, _args: argparse.Namespace) -> int:
        raise error

    return Command(
        name="boom",
        help="raises",
        description="raises",
        example="mlcd boom",
        add_arguments=lambda _parser: None,
        run=run,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("error", "code", "first_line"),
    [
        (GateFailed("3 findings"), 1, "mlcd: gate failed: 3 findings"),
        (UserInputError("mlcd.yaml:3:1: bad", hint="fix it"), 2, "mlcd: input error: mlcd.yaml"),
        (EnvironmentMissing("no trivy", hint="pip install x"), 3, "mlcd: environment: no trivy"),
        (KeyboardInterrupt(), 130, "mlcd: interrupted"),
    ],
)
def test_one_handler_maps_each_error_to_its_exit_code_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    code: int,
    first_line: str,
) -> None:
    monkeypatch.setattr(cli, "COMMANDS", [fake_command(error)])
    assert main(["boom"]) == code
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(first_line)
    assert "Traceback" not in err


def test_verbose_shows_the_traceback_and_then_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["validate", "--config", str(missing)]) == 2
    quiet = capsys.readouterr().err
    assert "Traceback" not in quiet
    assert main(["validate", "--config", str(missing), "--verbose"]) == 2
    loud = capsys.readouterr().err
    assert loud.startswith("Traceback (most recent call last):")
    assert "mlcd.errors.UserInputError" in loud
    assert loud.endswith(quiet)


def test_problems_and_hint_are_indented_under_the_message() -> None:
    error = UserInputError("f: 2 problems", problems=["f:1:1: a", "f:2:1: b"], hint="see docs")
    assert error.render() == (
        "mlcd: input error: f: 2 problems\n  f:1:1: a\n  f:2:1: b\n  hint: see docs"
    )


def _estimator_fit() -> None:
    raise ValueError("could not convert string to float: 'abc'")


def _fit_command() -> Command:
    def run(_ctx: object, _args: argparse.Namespace) -> int:
        try:
            _estimator_fit()
        except ValueError as exc:
            raise UserInputError("model.entrypoint: fitting raised ValueError") from exc
        return 0

    return Command(
        name="boom",
        help="raises",
        description="raises",
        example="mlcd boom",
        add_arguments=lambda _parser: None,
        run=run,  # type: ignore[arg-type]
    )


def test_verbose_shows_the_cause_and_its_own_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "COMMANDS", [_fit_command()])
    assert main(["boom"]) == 2
    quiet = capsys.readouterr().err
    assert quiet == "mlcd: input error: model.entrypoint: fitting raised ValueError\n"
    assert main(["boom", "--verbose"]) == 2
    loud = capsys.readouterr().err
    assert "in _estimator_fit" in loud
    assert "ValueError: could not convert string to float: 'abc'" in loud
    assert "The above exception was the direct cause of the following exception" in loud
    assert loud.endswith(quiet)
