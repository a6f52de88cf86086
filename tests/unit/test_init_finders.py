"""`mlcd init`'s finders on several layouts (data, target, entrypoint, the model's
third-party imports), the files it writes, `mlcd validate --github`'s checks and the
config `mlcd run --target local` runs. Nothing here runs git or the team's code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from mlcd.config import load_config, on_local_target
from mlcd.errors import UserInputError
from mlcd.scaffold import finders, githubcheck, templates

pytestmark = pytest.mark.unit


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


# ------------------------------------------------------------------ data


def test_the_one_data_file_is_found_wherever_it_is(tmp_path: Path) -> None:
    root = _write(tmp_path, {"data/raw/churn.csv": "a,b\n1,2\n", "train.py": ""})
    assert finders.find_data(root) == root / "data" / "raw" / "churn.csv"


def test_among_several_data_files_the_training_one_wins(tmp_path: Path) -> None:
    root = _write(tmp_path, {"data/train.csv": "a\n", "data/test.csv": "a\n"})
    assert finders.find_data(root).name == "train.csv"


def test_ambiguous_data_names_the_candidates_and_the_option(tmp_path: Path) -> None:
    root = _write(tmp_path, {"a.csv": "x\n", "b.parquet": ""})
    with pytest.raises(UserInputError) as info:
        finders.find_data(root)
    assert info.value.exit_code == 2
    assert info.value.problems == ["a.csv", "b.parquet"]
    assert "--data" in (info.value.hint or "")


def test_no_data_or_data_only_in_skipped_folders_is_exit_2(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {".mlcd-kit/tests/zoo/x/data.csv": "a\n", ".venv/lib/d.csv": "a\n", "m.py": ""},
    )
    with pytest.raises(UserInputError) as info:
        finders.find_data(root)
    assert "mlcd init --data" in (info.value.hint or "")


def test_a_given_data_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"--data nope\.csv: no such file"):
        finders.find_data(tmp_path, "nope.csv")


# ------------------------------------------------------------------ target


def test_a_column_named_like_a_label_is_the_target() -> None:
    assert finders.find_target(["age", "Churn", "plan"]).column == "Churn"


def test_without_a_label_name_the_last_column_is_the_target() -> None:
    found = finders.find_target(["ticket", "priority", "queue"])
    assert found.column == "queue"
    assert "--target" in found.why


def test_two_label_names_are_ambiguous() -> None:
    with pytest.raises(UserInputError) as info:
        finders.find_target(["label", "target", "x"], data="d.csv")
    assert "mlcd init --target target" in (info.value.hint or "")


def test_a_given_target_must_be_a_column() -> None:
    with pytest.raises(UserInputError, match=r"--target y: d\.csv has no such column"):
        finders.find_target(["a", "b"], "y", data="d.csv")


def test_the_task_follows_the_target(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 1.37:.2f},{i % 3},{'yes' if i % 2 else 'no'}" for i in range(60))
    data = _write(tmp_path, {"d.csv": "x,price,grade,churn\n" + rows + "\n"}) / "d.csv"
    assert finders.infer_task(data, "churn") == "classification"
    assert finders.infer_task(data, "grade") == "classification"
    assert finders.infer_task(data, "price") == "regression"


# ------------------------------------------------------------------ entrypoint

ROOT_LEVEL = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_model(C=1.0):
    return Pipeline([("s", StandardScaler()), ("m", LogisticRegression(C=C))])


def train(data):
    model = build_model()
    model.fit(data, data)
    return model
"""


def test_the_builder_is_found_and_a_training_function_is_not(tmp_path: Path) -> None:
    root = _write(tmp_path, {"train.py": ROOT_LEVEL})
    found = finders.find_entrypoint(root)
    assert found.spec(root) == "train.py:build_model"
    assert found.returns == "Pipeline"


def test_a_builder_in_a_package_returning_a_variable(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "src/churn/__init__.py": "",
            "src/churn/model.py": """
                import lightgbm as lgb


                def make_estimator(n_estimators: int = 50):
                    estimator = lgb.LGBMClassifier(n_estimators=n_estimators)
                    return estimator
                """,
            "tests/test_model.py": """
                from sklearn.dummy import DummyClassifier


                def make_fixture():
                    return DummyClassifier()
                """,
        },
    )
    found = finders.find_entrypoint(root)
    assert found.spec(root) == "src/churn/model.py:make_estimator"
    assert found.returns == "LGBMClassifier"


def test_functions_that_need_arguments_are_not_builders(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "m.py": """
                from sklearn.svm import SVC


                def with_data(x):
                    return SVC()
                """
        },
    )
    with pytest.raises(UserInputError) as info:
        finders.find_entrypoint(root)
    assert "--entrypoint" in (info.value.hint or "")


def test_several_builders_prefer_the_conventional_name(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "a.py": "from sklearn.svm import SVC\n\n\ndef baseline():\n    return SVC()\n",
            "b.py": "from sklearn.svm import SVC\n\n\ndef build_model():\n    return SVC()\n",
        },
    )
    assert finders.find_entrypoint(root).spec(root) == "b.py:build_model"


def test_several_builders_without_a_conventional_name_are_ambiguous(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "a.py": "from sklearn.svm import SVC\n\n\ndef one():\n    return SVC()\n",
            "b.py": "from sklearn.svm import SVR\n\n\ndef two():\n    return SVR()\n",
        },
    )
    with pytest.raises(UserInputError) as info:
        finders.find_entrypoint(root)
    assert info.value.problems == ["a.py:one (returns SVC)", "b.py:two (returns SVR)"]


def test_a_given_entrypoint_is_checked_by_reading_it(tmp_path: Path) -> None:
    root = _write(tmp_path, {"train.py": ROOT_LEVEL})
    assert finders.find_entrypoint(root, "train.py:build_model").function == "build_model"
    with pytest.raises(UserInputError, match="defines no function `nope`"):
        finders.find_entrypoint(root, "train.py:nope")


def test_third_party_imports_leave_out_stdlib_the_image_and_the_project(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "helpers.py": "",
            "train.py": """
                import os
                import numpy as np
                import lightgbm
                from imblearn.pipeline import Pipeline
                from sklearn.svm import SVC
                from helpers import thing
                """,
        },
    )
    assert finders.third_party_imports(root / "train.py", root) == ["lightgbm", "imblearn"]
    assert finders.requirement_line("imblearn").startswith("imbalanced-learn")


# ------------------------------------------------------------------ what init writes


def _plan(**changes: object) -> templates.Plan:
    values: dict[str, object] = {
        "project": "churn",
        "task": "classification",
        "entrypoint": "train.py:build_model",
        "entrypoint_found": "found",
        "data": "data/train.csv",
        "target": "yes",
        "target_why": "target: given",
        "threshold_metric": "accuracy",
        "threshold_kind": "min",
        "threshold_value": 0.61,
        "threshold_why": "baseline",
        "requirements": None,
        "requirement_lines": (),
        "trusted_types": (),
        "test_paths": ("tests",),
        "smoke_test": None,
        "ruff_format": False,
        "base_image": "python:3.11-slim",
        "kit": "acme/mlcd",
        "kit_ref": "v1.2.0",
        "config_path": "mlcd.yaml",
        "working_directory": ".",
        "branch": "main",
    }
    values.update(changes)
    return templates.Plan(**values)  # type: ignore[arg-type]


def _repo(tmp_path: Path, plan: templates.Plan, workflow: str | None = None) -> Path:
    (tmp_path / "mlcd.yaml").write_text(templates.config_text(plan))
    path = tmp_path / ".github" / "workflows" / "ml.yml"
    path.parent.mkdir(parents=True)
    path.write_text(workflow if workflow is not None else templates.workflow_text(plan))
    return tmp_path


def test_the_written_config_loads_and_quotes_what_yaml_would_misread(tmp_path: Path) -> None:
    repo = _repo(tmp_path, _plan())
    loaded = load_config(repo / "mlcd.yaml")
    assert loaded.config.model.target == "yes"  # not the boolean true
    assert loaded.config.model.entrypoint == "train.py:build_model"
    assert loaded.config.environments["production"].requires == ["staging"]
    assert {e.target for e in loaded.config.environments.values()} == {"docker-host"}


def test_the_written_workflow_passes_the_github_check(tmp_path: Path) -> None:
    repo = _repo(tmp_path, _plan())
    report = githubcheck.check(load_config(repo / "mlcd.yaml"), repo)
    assert report.errors == []
    assert any("placeholder" in w for w in report.warnings)
    workflow = yaml.safe_load((repo / ".github" / "workflows" / "ml.yml").read_text())
    assert workflow["jobs"]["deliver"]["with"]["image"] == (
        "ghcr.io/${{ github.repository }}/churn"
    )


def test_a_second_project_in_a_subfolder_keeps_its_tests(tmp_path: Path) -> None:
    """`v2/` with its own data and tests is another project: the root's test.paths leave it
    out (a folder holding only tests is still taken)."""
    from mlcd.scaffold.command import _test_paths

    _write(
        tmp_path,
        {
            "tests/test_model.py": "def test_x():\n    pass\n",
            "checks/test_more.py": "def test_y():\n    pass\n",
            "v2/churn.csv": "a,y\n1,0\n",
            "v2/model.py": "X = 1\n",
            "v2/tests/test_model.py": "def test_z():\n    pass\n",
            "v3/requirements.txt": "xgboost\n",
            "v3/test_v3.py": "def test_w():\n    pass\n",
        },
    )
    assert sorted(_test_paths(tmp_path)) == ["checks", "tests"]


def test_xgboost_models_get_their_trusted_types_and_the_workflow_its_name(
    tmp_path: Path,
) -> None:
    from mlcd.scaffold.command import _trusted_types

    assert _trusted_types(["xgboost"], "classification") == (
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
    )
    assert _trusted_types(["lightgbm"], "regression") == ()
    plan = _plan(
        requirements="requirements-model.txt",
        requirement_lines=("xgboost-cpu==3.2.0",),
        trusted_types=_trusted_types(["xgboost"], "regression"),
    )
    repo = _repo(tmp_path, plan)
    model = load_config(repo / "mlcd.yaml").config.model
    assert model.trusted_types == ["xgboost.core.Booster", "xgboost.sklearn.XGBRegressor"]
    workflow = yaml.safe_load((repo / ".github" / "workflows" / "ml.yml").read_text())
    assert workflow["name"] == "ml churn"  # two projects' workflows are told apart
    assert workflow["jobs"]["deliver"]["secrets"]["signing-key"] == (
        "${{ secrets.MLCD_SIGNING_KEY }}"
    )
    assert githubcheck.check(load_config(repo / "mlcd.yaml"), repo).errors == []


def _edited(tmp_path: Path, old: str, new: str) -> list[str]:
    plan = _plan()
    text = templates.workflow_text(plan)
    assert old in text
    repo = _repo(tmp_path, plan, text.replace(old, new))
    return githubcheck.check(load_config(repo / "mlcd.yaml"), repo).errors


def test_a_branch_pin_is_an_error(tmp_path: Path) -> None:
    errors = _edited(tmp_path, "deliver.yml@v1.2.0", "deliver.yml@main")
    assert len(errors) == 1
    assert "not a tag or a full commit SHA" in errors[0]


def test_a_missing_permission_is_an_error(tmp_path: Path) -> None:
    errors = _edited(tmp_path, "      pull-requests: write", "      pull-requests: read")
    assert len(errors) == 1
    assert "pull-requests: write" in errors[0]


def test_missing_deploy_secrets_are_an_error(tmp_path: Path) -> None:
    errors = _edited(
        tmp_path,
        "      deploy-known-hosts: ${{ secrets.MLCD_DEPLOY_KNOWN_HOSTS }}",
        "",
    )
    assert len(errors) == 1
    assert "deploy-known-hosts" in errors[0]


def test_a_local_environment_is_an_error_and_no_workflow_is_one(tmp_path: Path) -> None:
    plan = _plan()
    repo = _repo(tmp_path, plan)
    text = (repo / "mlcd.yaml").read_text().split("environments:")[0]
    (repo / "mlcd.yaml").write_text(text + "environments:\n  staging: {}\n")
    errors = githubcheck.check(load_config(repo / "mlcd.yaml"), repo).errors
    assert len(errors) == 1
    assert "environments.staging has target `local`" in errors[0]
    (repo / ".github" / "workflows" / "ml.yml").unlink()
    errors = githubcheck.check(load_config(repo / "mlcd.yaml"), repo).errors
    assert "`mlcd init` writes one" in errors[0]


def test_run_target_local_moves_every_environment_to_this_engine(tmp_path: Path) -> None:
    repo = _repo(tmp_path, _plan())
    loaded = load_config(repo / "mlcd.yaml")
    local = on_local_target(loaded)
    assert {e.target for e in local.config.environments.values()} == {"local"}
    assert all(e.host is None for e in local.config.environments.values())
    assert local.config.environments["staging"].strategy == "canary"
    assert local.path == loaded.path
    # the config as written is unchanged
    assert loaded.config.environments["staging"].target == "docker-host"


def test_the_placeholder_kit_is_a_warning(tmp_path: Path) -> None:
    repo = _repo(tmp_path, _plan(kit="org/mlcd"))
    report = githubcheck.check(load_config(repo / "mlcd.yaml"), repo)
    assert report.errors == []
    assert any("placeholder repository org/mlcd" in w for w in report.warnings)
