"""mlcd.yaml: loading, defaults, and errors that name file, line, column and key path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlcd.cli import main
from mlcd.config import (
    Config,
    json_schema,
    json_schema_text,
    load_config,
    parse_duration,
)
from mlcd.errors import UserInputError
from tests.conftest import ROOT

EXAMPLE = ROOT / "model" / "mlcd.yaml"

VALID = """\
version: 1
project: demo
model:
  task: classification
  entrypoint: train.py:build_model
  data: data.csv
  target: y
"""


def write(tmp_path: Path, text: str, name: str = "mlcd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


def problems_of(path: Path) -> UserInputError:
    with pytest.raises(UserInputError) as caught:
        load_config(path)
    assert caught.value.exit_code == 2
    return caught.value


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`mlcd validate --config PATH` through the CLI: exit code and stderr."""
    code = main(["validate", "--config", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# --------------------------------------------------------------------------------------
# Valid files


def test_the_example_model_config_loads_with_its_values() -> None:
    loaded = load_config(EXAMPLE)
    config = loaded.config
    assert config.project == "breast-cancer"
    assert config.model.task == "classification"
    assert config.model.params == {"C": 1.0}
    assert config.evaluate.thresholds["roc_auc"].min == 0.97
    assert config.environments["staging"].canary.interval == 10.0  # "10s"
    assert config.environments["production"].requires == ["staging"]
    assert loaded.root == EXAMPLE.parent.resolve()
    assert len(loaded.sha256) == 64


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID)).config
    assert config.model.test_size == 0.2
    assert config.model.seed == 42
    assert config.lint.paths == ["."]
    assert config.lint.bandit_severity == "medium"
    assert config.test.min_coverage == 80
    assert config.scan.severity == "HIGH"
    assert config.environments == {}
    assert config.image_name == "127.0.0.1:5000/demo"


def test_validate_command_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(EXAMPLE)]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(EXAMPLE), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    plans = out.pop("plans")
    assert out == {
        "valid": True,
        "config": str(EXAMPLE.resolve()),
        "project": "breast-cancer",
        "warnings": [],
    }
    # the staging canary's plan at its load test's rate (rollout/plan.py)
    assert plans["staging"]["decides"] is True
    assert plans["staging"]["rps"] == 50
    assert [s["step"] for s in plans["staging"]["steps"]] == ["10%", "50%"]


# --------------------------------------------------------------------------------------
# One problem of each kind: exit 2, file:line:column and the key path


def test_typo_key_suggests_the_closest_known_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID + "evaluate:\n  thresold: {accuracy: {min: 0.9}}\n")
    error = problems_of(path)
    assert error.problems == [
        f"{path}:9:3: evaluate.thresold: unknown key `thresold` (did you mean `thresholds`?)"
    ]
    code, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:9:3: evaluate.thresold" in err
    assert "did you mean `thresholds`?" in err


def test_unknown_key_without_a_close_match_lists_the_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "lint: {zzz: 1}\n")
    (problem,) = problems_of(path).problems
    assert problem.startswith(f"{path}:8:8: lint.zzz: unknown key `zzz`; known keys: paths,")


def test_wrong_type_names_the_expected_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID + "test:\n  min-coverage: high\n")
    assert problems_of(path).problems == [
        f'{path}:9:17: test.min-coverage: expected a number, got "high"'
    ]
    code, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:9:17: test.min-coverage: expected a number" in err


def test_wrong_type_inside_a_list_names_the_index(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "lint:\n  paths: [src, [a]]\n")
    assert problems_of(path).problems == [
        f'{path}:9:16: lint.paths[1]: expected a string, got ["a"]'
    ]


def test_missing_required_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID.replace("  target: y\n", ""))
    assert problems_of(path).problems == [
        f"{path}:3:1: model.target: missing required key `target`"
    ]
    code, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:3:1: model.target: missing required key `target`" in err


def test_unknown_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID.replace("version: 1", "version: 7"))
    assert problems_of(path).problems == [
        f"{path}:1:10: version: unknown schema version 7; this mlcd reads version 1"
    ]
    code, err = validate(path, capsys)
    assert code == 2
    assert "unknown schema version 7" in err


def test_a_value_outside_its_range(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "  test-size: 1.5\n")
    (problem,) = problems_of(path).problems
    assert problem.startswith(f"{path}:8:14: model.test-size: ")
    assert "less than 1" in problem


def test_a_choice_outside_the_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("task: classification", "task: clustering"))
    (problem,) = problems_of(path).problems
    assert problem.startswith(f'{path}:4:9: model.task: got "clustering", expected one of')
    assert "'classification' or 'regression'" in problem


def test_a_bound_needs_min_or_max(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "evaluate:\n  thresholds: {accuracy: {}}\n")
    assert problems_of(path).problems == [
        f"{path}:9:26: evaluate.thresholds.accuracy: a bound needs `min`, `max` or both"
    ]


def test_invalid_yaml_names_line_and_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID + 'lint:\n  paths: ["src\n')
    error = problems_of(path)
    assert error.message.startswith(f"{path}:10:1: lint.paths: invalid YAML: ")
    assert "quoted scalar" in error.message
    code, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:10:1: lint.paths: invalid YAML" in err
    assert "hint:" in err


def test_invalid_yaml_bad_indentation(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "  params:\n    C: 1\n   max_iter: 5\n")
    error = problems_of(path)
    assert error.message.startswith(f"{path}:10:4: model.params.max_iter: invalid YAML: ")


def test_duplicate_keys_are_errors_with_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID + "  target: z\n")
    assert problems_of(path).problems == [
        f"{path}:8:3: model.target: duplicate key `target` (first at line 7); remove one"
    ]
    code, err = validate(path, capsys)
    assert code == 2
    assert "duplicate key `target`" in err


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert problems_of(path).message == f"{path}:1:1: the config file is empty"
    code, err = validate(path, capsys)
    assert code == 2
    assert "the config file is empty" in err


def test_a_list_instead_of_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- version\n- project\n")
    assert "must be a mapping" in problems_of(path).message


def test_missing_file_says_how_to_point_at_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = problems_of(tmp_path / "nope.yaml")
    assert "not found" in error.message
    assert error.hint is not None
    assert "--config" in error.hint
    code, err = validate(tmp_path / "nope.yaml", capsys)
    assert code == 2
    assert "hint: run from the project folder or pass --config PATH" in err


def test_a_folder_instead_of_a_file(tmp_path: Path) -> None:
    assert "is a folder" in problems_of(tmp_path).message


def test_environment_requirements_must_exist_and_not_loop(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        VALID
        + "environments:\n"
        + "  a: {requires: [b]}\n"
        + "  b: {requires: [a, prod]}\n"
        + "  c: {requires: [c]}\n",
    )
    assert problems_of(path).problems == [
        f"{path}:9:7: environments.a.requires: the requirements form a cycle (a → b → a)",
        (
            f"{path}:10:21: environments.b.requires[1]: names unknown environment `prod` "
            "(known: `a`, `b`, `c`)"
        ),
        f"{path}:11:18: environments.c.requires[0]: environment `c` cannot require itself",
    ]


# --------------------------------------------------------------------------------------
# Every problem at once


def test_every_problem_is_reported_at_once_in_file_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """\
        version: 2
        project: demo
        model:
          task: classification
          data: data.csv
          target: y
          target: y2
        lint: {paths: [.], bandit-severity: severe}
        tset: {paths: [tests]}
        environments:
          staging:
            canary: {interval: soon}
            requires: [production]
        """,
    )
    error = problems_of(path)
    assert error.message == f"{path}: 7 problems in the config"
    assert error.problems == [
        f"{path}:1:10: version: unknown schema version 2; this mlcd reads version 1",
        f"{path}:3:1: model.entrypoint: missing required key `entrypoint`",
        f"{path}:7:3: model.target: duplicate key `target` (first at line 6); remove one",
        (
            f"{path}:8:37: lint.bandit-severity: got \"severe\", expected one of 'low', 'medium' "
            "or 'high'"
        ),
        f"{path}:9:1: tset: unknown key `tset` (did you mean `test`?)",
        (
            f"{path}:12:24: environments.staging.canary.interval: a duration is a number "
            "of seconds or a string like 30s, 2m, 500ms"
        ),
        (
            f"{path}:13:16: environments.staging.requires[0]: names unknown environment "
            "`production` (known: `staging`)"
        ),
    ]
    code, err = validate(path, capsys)
    assert code == 2
    for problem in error.problems:
        assert problem in err


def test_every_problem_also_includes_cross_references(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        VALID.replace("version: 1", "version: 3")
        + "environments:\n  prod: {requires: [staging]}\n",
    )
    problems = problems_of(path).problems
    assert len(problems) == 2
    assert "unknown schema version 3" in problems[0]
    assert "names unknown environment `staging`" in problems[1]


# --------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (5, 5.0),
        (0.25, 0.25),
        ("12", 12.0),
        (" 10 s ", 10.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "10 days", "-1s", -1, True, None, [30]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_bad_duration_in_the_file_is_positioned(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "environments:\n  staging:\n    canary: {interval: 3 weeks}\n")
    assert problems_of(path).problems == [
        (
            f"{path}:10:24: environments.staging.canary.interval: a duration is a number of "
            "seconds or a string like 30s, 2m, 500ms"
        )
    ]


# --------------------------------------------------------------------------------------
# The JSON Schema


def test_the_schema_file_is_not_stale() -> None:
    committed = (ROOT / "schema" / "mlcd.schema.json").read_text("utf-8")
    assert committed == json_schema_text(), (
        "schema/mlcd.schema.json is stale: run `make schema` and commit it"
    )


def test_the_schema_accepts_the_example_and_rejects_a_typo() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    example = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    assert list(validator.iter_errors(example)) == []
    broken = dict(example, evaluate={"thresold": {}})
    assert [e.validator for e in validator.iter_errors(broken)] == ["additionalProperties"]


def test_schema_keys_are_the_yaml_spelling() -> None:
    schema = json_schema()
    assert schema["title"] == "mlcd.yaml"
    assert set(schema["required"]) == {"version", "project", "model"}
    assert "test-size" in schema["$defs"]["ModelSection"]["properties"]
    assert set(schema["properties"]) == {
        info.alias or name for name, info in Config.model_fields.items()
    }
