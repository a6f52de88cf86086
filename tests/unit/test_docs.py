"""The generated references (docs/cli.md, docs/configuration.md) match the code."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from mlcd.cli import COMMANDS
from tests.conftest import ROOT


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["docs/cli.md", "docs/configuration.md", "README.md"])
def test_generated_docs_are_not_stale(name: str) -> None:
    generated = gen_docs().outputs()[ROOT / name]
    committed = (ROOT / name).read_text("utf-8")
    assert committed == generated, (
        f"{name} is stale: run `make docs` (python scripts/gen_docs.py) and commit it"
    )


def test_cli_reference_covers_every_command_with_its_example() -> None:
    text = gen_docs().cli_markdown()
    for command in COMMANDS:
        assert f"\n## mlcd {command.name}\n" in text
        assert command.example.splitlines()[0] in text


def test_configuration_reference_covers_every_section() -> None:
    text = gen_docs().configuration_markdown()
    for heading in ("## Top level", "## `model`", "## `environments.<name>.canary`"):
        assert heading in text
    assert "| `target` | string | **required** | the target column |" in text
    assert '| `paths` | list of string | `["tests"]` | test paths |' in text


def test_check_mode_reports_stale_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = gen_docs()
    assert module.main(["--check"]) == 0
    monkeypatch.setattr(module, "cli_markdown", lambda: "something else\n")
    assert module.main(["--check"]) == 1
    assert "stale: docs/cli.md" in capsys.readouterr().err
