"""`mlcd validate` catches what can be known before running, each with file:line:column and
the key path: schema-level mistakes (strict types, canary steps, ports, metrics of the task,
min-requests) and the files the config names (data and target column, entrypoint file,
function and params, lint and test paths) — the entrypoint is parsed, never run."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from mlcd import config as config_module
from mlcd.cli import main
from mlcd.config import load_config
from mlcd.context import Context

TRAIN = """\
from pathlib import Path

Path(__file__).with_name("IMPORTED").write_text("the entrypoint ran")  # validate must not


def build_model(C: float = 1.0, max_iter: int = 100, *, solver="lbfgs", balanced=False,
                penalty: "str | None" = None, layers: list[int] | None = None):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=C, max_iter=max_iter)


def build_svm(C=1.0):
    from sklearn.svm import LinearSVC
    return LinearSVC(C=C)


def needs_alpha(alpha, /, beta, **extra):
    return None
"""

CONFIG = """\
version: 1
project: demo
model:
  task: classification
  entrypoint: train.py:build_model
  data: data.csv
  target: y
  params: {C: 0.5, max_iter: 200}
lint: {paths: [train.py]}
test: {paths: [tests]}
evaluate:
  thresholds: {accuracy: {min: 0.5}}
environments:
  staging:
    canary: {steps: [10, 50, 100], min-requests: 10}
  production:
    requires: [staging]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(TRAIN, "utf-8")
    (tmp_path / "data.csv").write_text("a,b,y\n1,2,0\n3,4,1\n", "utf-8")
    (tmp_path / "tests").mkdir()
    path = tmp_path / "mlcd.yaml"
    path.write_text(CONFIG, "utf-8")
    return path


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", "--config", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")
    return path


def test_a_good_project_passes_without_running_the_entrypoint(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(project, capsys)
    assert code == 0, out
    assert not (project.parent / "IMPORTED").exists()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # schema level: known from the file alone
        (
            "steps: [10, 50, 100]",
            "steps: [50, 10, 100]",
            (
                r":15:21: environments\.staging\.canary\.steps: steps must rise strictly: 10 comes "
                r"after 50"
            ),
        ),
        (
            "steps: [10, 50, 100]",
            "steps: [10, 50]",
            r":15:21: environments\.staging\.canary\.steps: the last step must be 100",
        ),
        (
            "min-requests: 10",
            "min-requests: 0",
            r":15:50: environments\.staging\.canary\.min-requests: .*greater than or equal to 1",
        ),
        (
            "  target: y\n",
            '  target: y\n  test-size: "0.2"\n',
            r':8:14: model\.test-size: expected a number, got "0\.2"',
        ),
        (
            "accuracy: {min: 0.5}",
            "rmse: {max: 0.5}",
            (
                r":12:16: evaluate\.thresholds\.rmse: `rmse` is a regression metric; this model's "
                r"task is classification"
            ),
        ),
        (
            "  thresholds: {accuracy: {min: 0.5}}\n",
            (
                "  thresholds: {accuracy: {min: 0.5}}\n  max-regression: {auc: 0.01}\n"
                "  slices: [{feature: a, thresholds: {r2: {min: 0.1}}}]\n"
            ),
            (
                r":13:20: evaluate\.max-regression\.auc: unknown metric `auc` \(did you mean "
                r"`roc_auc`\?\)"
            ),
        ),
        # the files the config names
        (
            "data: data.csv",
            "data: data/missing.csv",
            r":6:9: model\.data: `data/missing\.csv` does not exist",
        ),
        ("target: y", "target: label", r":7:11: model\.target: column `label` is not in data\.csv"),
        (
            "entrypoint: train.py:build_model",
            "entrypoint: trian.py:build_model",
            r":5:15: model\.entrypoint: `trian\.py` does not exist",
        ),
        (
            "entrypoint: train.py:build_model",
            "entrypoint: train.py:build_modle",
            (
                r":5:15: model\.entrypoint: train\.py defines no function `build_modle` \(did you "
                r"mean `build_model`\?\)"
            ),
        ),
        (
            "entrypoint: train.py:build_model",
            "entrypoint: models.train:build_model",
            r":5:15: model\.entrypoint: no module `models\.train`",
        ),
        ("paths: [train.py]", "paths: [train.py, src]", r":9:26: lint\.paths\[1\]: `src` does not"),
        ("paths: [tests]", "paths: [tset]", r":10:16: test\.paths\[0\]: `tset` does not exist"),
        (
            "params: {C: 0.5, max_iter: 200}",
            "params: {C: 0.5, iters: 200}",
            (
                r":8:20: model\.params\.iters: `build_model` \(train\.py:6\) has no parameter "
                r"`iters`"
            ),
        ),
        (
            "params: {C: 0.5, max_iter: 200}",
            "params: {C: strong}",
            (
                r":8:15: model\.params\.C: `build_model` \(train\.py:6\) expects a number for `C` "
                r'\(its annotation `float`\), got "strong"'
            ),
        ),
        (
            "params: {C: 0.5, max_iter: 200}",
            "params: {max_iter: 2.5}",
            r":8:22: model\.params\.max_iter: .* expects an integer for `max_iter`",
        ),
        (
            "params: {C: 0.5, max_iter: 200}",
            "params: {balanced: 3}",
            r":8:22: model\.params\.balanced: .* expects true or false .*its default `False`",
        ),
        (
            "params: {C: 0.5, max_iter: 200}",
            "params: {layers: 3}",
            r":8:20: model\.params\.layers: .* expects a list or null .*, got 3",
        ),
        (
            "params: {C: 0.5, max_iter: 200}",
            "params: {penalty: 1}",
            r":8:21: model\.params\.penalty: .* expects null or a string",
        ),
        (
            "train.py:build_model\n",
            "train.py:needs_alpha\n",
            r":8:3: model\.params: `needs_alpha` \(train\.py:17\) requires `beta`",
        ),
        (
            "build_model\n  data: data.csv\n  target: y\n  params: {C: 0.5, max_iter: 200}",
            "needs_alpha\n  data: data.csv\n  target: y\n  params: {alpha: 1, beta: 2}",
            r":8:12: model\.params\.alpha: `needs_alpha` .* takes `alpha` only by position",
        ),
    ],
)
def test_each_mistake_is_named_with_file_line_and_key(
    project: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, expected: str
) -> None:
    edit(project, old, new)
    code, out = validate(project, capsys)
    assert code == 2, out
    assert re.search(re.escape(str(project)) + expected, out), out
    assert not (project.parent / "IMPORTED").exists()


def test_extra_keyword_parameters_take_any_name(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project, "train.py:build_model", "train.py:needs_alpha")
    edit(project, "params: {C: 0.5, max_iter: 200}", "params: {beta: 1, anything: x}")
    assert validate(project, capsys)[0] == 0


def test_a_string_default_does_not_forbid_numbers(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scikit-learn's idiom: `max_features="sqrt"` also takes 0.5; no false alarm."""
    edit(project, "params: {C: 0.5, max_iter: 200}", "params: {solver: 3}")
    assert validate(project, capsys)[0] == 0


def test_target_column_of_a_parquet_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1]}).to_parquet(project.parent / "d.parquet")
    edit(project, "data: data.csv", "data: d.parquet")
    code, out = validate(project, capsys)
    assert code == 2
    assert "model.target: column `y` is not in d.parquet; its columns: `a`, `label`" in out
    edit(project, "target: y", "target: label")
    assert validate(project, capsys)[0] == 0


def test_a_syntax_error_in_the_entrypoint_names_its_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.parent / "train.py").write_text("def build_model(:\n    pass\n", "utf-8")
    code, out = validate(project, capsys)
    assert code == 2
    assert f"{project.parent / 'train.py'}:1: the file is not valid Python" in out


def test_probability_metric_on_a_model_without_predict_proba_is_a_warning(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project, "train.py:build_model", "train.py:build_svm")
    edit(project, "params: {C: 0.5, max_iter: 200}", "params: {C: 0.5}")
    edit(project, "accuracy: {min: 0.5}", "roc_auc: {min: 0.5}")
    code, out = validate(project, capsys)
    assert code == 0
    assert "evaluate.thresholds.roc_auc: roc_auc needs predicted probabilities" in out
    assert "LinearSVC, which has no predict_proba" in out


def test_every_problem_at_once(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(project, "data: data.csv", "data: nope.csv")
    edit(project, "paths: [train.py]", "paths: [nope]")
    edit(project, "params: {C: 0.5, max_iter: 200}", "params: {C: x}")
    code, out = validate(project, capsys)
    assert code == 2
    assert "3 problems with the files it names" in out


def _two_envs(tmp_path: Path, staging: str, production: str, other: str = "") -> Path:
    path = tmp_path / "ports.yaml"
    path.write_text(
        textwrap.dedent(CONFIG).replace(
            "environments:\n  staging:\n    canary: {steps: [10, 50, 100], min-requests: 10}\n"
            "  production:\n    requires: [staging]\n",
            f"environments:\n  staging: {{{staging}}}\n  production: {{{production}}}\n"
            + (f"  qa: {{{other}}}\n" if other is not None else ""),
        ),
        "utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("staging", "production", "other", "message"),
    [
        ("port: 9100", "port: 9100", "", "production.port: router port 9100 (set) is already"),
        (
            "",
            "port: 8081",
            "",
            (
                "production.port: router port 8081 (set) is already environment "
                "`staging`'s (its default)"
            ),
        ),
        (
            "port: 8083",
            "",
            "",
            (
                "environments.qa: router port 8083 (its default) is already "
                "environment `staging`'s (set)"
            ),
        ),
    ],
)
def test_two_environments_on_one_port(
    tmp_path: Path, staging: str, production: str, other: str, message: str
) -> None:
    from mlcd.errors import UserInputError

    with pytest.raises(UserInputError) as caught:
        load_config(_two_envs(tmp_path, staging, production, other))
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_kubernetes_environments_have_no_router_port(tmp_path: Path) -> None:
    path = _two_envs(tmp_path, "port: 9100", "port: 9100, target: kubernetes")
    assert load_config(path).config.environments["production"].port == 9100


def test_the_default_ports_are_the_ones_deploy_uses(tmp_path: Path) -> None:
    """config.py's copy of deploy's port rule (for the clash check) must not drift."""
    path = _two_envs(tmp_path, "", "", "")
    ctx = Context(config_path=path, out=tmp_path / "out")
    port = config_module.DEFAULT_ROUTER_PORTS
    assert ctx.environment("staging").port == port["staging"]
    assert ctx.environment("production").port == port["production"]
    assert ctx.environment("qa").port == config_module.OTHER_ROUTER_PORTS_FROM


def test_a_data_file_with_a_header_and_no_rows(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.parent / "data.csv").write_text("a,b,y\n", "utf-8")
    code, out = validate(project, capsys)
    assert code == 2, out
    assert "mlcd.yaml:6:9: model.data: " in out
    assert "data.csv has a header but no rows to train on" in out
    pd.DataFrame({"a": pd.Series([], dtype=float), "y": pd.Series([], dtype=int)}).to_parquet(
        project.parent / "empty.parquet"
    )
    edit(project, "data: data.csv", "data: empty.parquet")
    code, out = validate(project, capsys)
    assert code == 2, out
    assert "empty.parquet has a header but no rows to train on" in out


@pytest.mark.parametrize(
    "name",
    ["Bad Image Name", "127.0.0.1:5000/demo:latest", "ghcr.io/org//demo", "demo@sha256:ab"],
)
def test_an_image_name_that_is_no_repository(
    project: Path, name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLCD_IMAGE", raising=False)
    edit(
        project,
        "lint: {paths: [train.py]}",
        f'image: {{name: "{name}"}}\nlint: {{paths: [train.py]}}',
    )
    code, out = validate(project, capsys)
    assert code == 2, out
    assert f"image.name: `{name}` is not an image repository" in out


def test_mlcd_image_is_checked_and_wins_over_image_name(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(
        project, "lint: {paths: [train.py]}", 'image: {name: "Bad Name"}\nlint: {paths: [train.py]}'
    )
    monkeypatch.setenv("MLCD_IMAGE", "ghcr.io/My-Org/demo")  # lower-cased by mlcd: valid
    code, out = validate(project, capsys)
    assert code == 0, out
    monkeypatch.setenv("MLCD_IMAGE", "")  # the workflow's empty `image` input: unset
    code, out = validate(project, capsys)
    assert code == 2, out
    assert "image.name: `Bad Name` is not an image repository" in out
    edit(project, 'image: {name: "Bad Name"}', 'image: {name: "ghcr.io/acme/demo"}')
    assert validate(project, capsys)[0] == 0
    monkeypatch.setenv("MLCD_IMAGE", "not an image")
    code, out = validate(project, capsys)
    assert code == 2, out
    assert "MLCD_IMAGE: `not an image` is not an image repository" in out
    assert "image.name" not in out


def test_validate_says_what_the_weights_mean_with_a_sticky_key(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sticky = "canary: {steps: [10, 50, 100], min-requests: 10}\n    routing: {sticky-key: X-User}"
    edit(project, "canary: {steps: [10, 50, 100], min-requests: 10}", sticky)
    code, out = validate(project, capsys)
    assert code == 0, out
    # no traffic figure (deploy measures stable's): the meaning of the weights still shown
    assert "routing of staging: sticky key X-User (strict): one cohort of 10%" in out
    assert "the steps 50% are not run" in out
    # with a traffic figure the plan has the one cohort step and says why
    edit(project, "min-requests: 10}", "min-requests: 10}\n    analysis: {expected-rps: 500}")
    code, out = validate(project, capsys)
    assert "step 10%: about" in out, out
    assert "step 50%" not in out
    assert "    sticky key X-User (strict): one cohort of 10%" in out
