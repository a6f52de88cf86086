"""The team's own code in a model, other packages' types, and what no trusted list allows.

- `model/pipeline.py:make_model` importing `model.features` trains, evaluates and is
  recorded (project types, the modules the image ships, with their sha256);
- a shipped module changed since train stops the build (exit 2);
- `model.trusted-types` cannot trust a dangerous callable: the config, the loader, the
  server and the scanner each refuse `builtins.eval` / `os.system` whatever a list says;
- pip's failures: an unresolvable requirement is exit 2, no index is exit 3.
"""

from __future__ import annotations

import builtins
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlcd import cli, config, modelio, projectcode
from mlcd.errors import EnvironmentMissing, GateFailed, UserInputError
from mlcd.modelmeta import ModelMeta
from mlcd.security import modelscan
from mlcd.serve import model as served
from mlcd.stages import build
from mlcd.tools import pip
from tests.conftest import ROOT

ZOO = ROOT / "tests" / "zoo"


@pytest.fixture(autouse=True)
def _no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    monkeypatch.delenv("MLCD_REUSE", raising=False)


def _copy(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(ZOO / name, root, ignore=shutil.ignore_patterns("__pycache__", ".mlcd*"))
    return root


def test_a_package_entrypoint_trains_and_records_the_project_code(tmp_path: Path) -> None:
    root = _copy("owncode", tmp_path)
    cfg, out = root / "mlcd.yaml", tmp_path / "out"
    assert cli.main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    meta = json.loads((out / "train" / "model.json").read_text())
    assert meta["project_types"] == ["model.features.ClipToTrainingRange"]
    assert "model.features.ClipToTrainingRange" in meta["trusted_types"]
    shipped = {m["path"]: m for m in meta["project_modules"]}
    assert {"model/__init__.py", "model/features.py"} <= set(shipped)
    assert shipped["model/features.py"]["module"] == "model.features"
    result = json.loads((out / "train" / "result.json").read_text())
    assert result["details"]["project_types"] == meta["project_types"]
    # evaluate loads it: the project's type is trusted, its module importable
    assert cli.main(["evaluate", "--config", str(cfg), "--out", str(out)]) == 0
    # the image gets exactly those files; a changed one is refused (the model was not
    # trained with it)
    loaded = config.load_config(cfg)
    ctx: Any = type("Ctx", (), {"loaded": loaded})()
    files = build.project_files(ctx, ModelMeta.from_dict(meta))
    assert sorted(rel for _, rel in files) == sorted(shipped)
    features = root / "model" / "features.py"
    features.write_text(features.read_text() + "\n# changed\n")
    with pytest.raises(UserInputError) as info:
        build.project_files(ctx, ModelMeta.from_dict(meta))
    assert info.value.problems == ["model/features.py: changed since `mlcd train` fitted the model"]


def test_a_project_module_cannot_take_the_name_of_the_standard_library(tmp_path: Path) -> None:
    (tmp_path / "os.py").write_text("def system(x):\n    return x\n")
    (tmp_path / "features.py").write_text("class Mine:\n    pass\n")
    report = projectcode.classify(
        ["os.system", "features.Mine", "json.JSONDecoder", "sklearn.tree._tree.Tree"], tmp_path
    )
    assert report.dangerous == ["os.system"]
    assert report.project == ["features.Mine"]
    assert report.refused == ["json.JSONDecoder"]
    assert report.builtin == ["sklearn.tree._tree.Tree"]
    assert "os.system" not in report.allowed


@pytest.fixture
def eval_model(tmp_path: Path) -> Path:
    """A fitted model holding `builtins.eval` (an unused FunctionTransformer of it)."""
    import numpy as np

    x = np.arange(40, dtype=float).reshape(20, 2)
    y = np.arange(20) % 2
    prepare = ColumnTransformer(
        [("evil", FunctionTransformer(func=builtins.eval), [])], remainder="passthrough"
    )
    model = Pipeline([("prepare", prepare), ("clf", LogisticRegression())]).fit(x, y)
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    assert "builtins.eval" in sio.get_untrusted_types(file=path)
    return path


def test_no_trusted_list_lets_a_dangerous_callable_load(eval_model: Path) -> None:
    # the scanner: a finding of the dangerous rule, even when the project "trusts" it
    found = modelscan.scan_model_file(eval_model, trusted=["builtins.eval"])
    assert [f.id for f in found if f.package == "builtins.eval"] == [modelscan.RULE_DANGEROUS]
    assert all(f.blocking for f in found)
    # mlcd's loader, given the same list
    with pytest.raises(GateFailed) as info:
        modelio.load_model(eval_model, ["builtins.eval"])
    assert "dangerous type: builtins.eval" in info.value.problems
    # the server, with a model.json that lists it
    folder = eval_model.parent
    meta = {
        "name": "m",
        "task": "classification",
        "features": [{"name": "a"}, {"name": "b"}],
        "classes": [0, 1],
        "trusted_types": sio.get_untrusted_types(file=eval_model),
    }
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserInputError) as served_info:
        served.load(folder)
    assert "builtins.eval" in served_info.value.message


def test_train_refuses_a_model_holding_a_dangerous_callable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.mlprojects import write_project

    code = """
    import builtins
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    def build_model():
        prepare = ColumnTransformer([("x", FunctionTransformer(func=builtins.eval), [])],
                                    remainder="passthrough")
        return Pipeline([("p", prepare), ("c", LogisticRegression(max_iter=1000))])
    """
    cfg = write_project(tmp_path / "p", code=code, model={"trusted-types": ["builtins.compile2"]})
    assert cli.main(["train", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "dangerous type: builtins.eval" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_the_config_refuses_to_trust_a_dangerous_callable(tmp_path: Path, name: str) -> None:
    path = tmp_path / "mlcd.yaml"
    path.write_text(
        "version: 1\nproject: p\nmodel:\n  task: classification\n  entrypoint: t.py:f\n"
        f"  data: d.csv\n  target: y\n  trusted-types:\n    - sklearn.x.Y\n    - {name}\n"
    )
    with pytest.raises(UserInputError) as info:
        config.load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:10:7: model.trusted-types[1]: ")
    assert f"`{name}` can run code of a model file's choosing" in problem


def _fake_pip(monkeypatch: pytest.MonkeyPatch, stderr: str) -> None:
    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert "download" in argv
        assert "--only-binary=:all:" in argv
        return subprocess.CompletedProcess(argv, 1, "", stderr)

    monkeypatch.setattr(pip, "run", run)


def test_an_unresolvable_model_requirement_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_pip(
        monkeypatch,
        "ERROR: Could not find a version that satisfies the requirement nope==9 (from "
        "versions: none)\nERROR: No matching distribution found for nope==9\n",
    )
    with pytest.raises(UserInputError) as info:
        pip.download(tmp_path, packages=["nope==9"], user_source="model.requirements: r.txt")
    assert info.value.exit_code == 2
    assert info.value.message.startswith("model.requirements: r.txt: pip cannot resolve it")


def test_no_index_reachable_is_exit_3_even_when_pip_then_finds_no_match(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_pip(
        monkeypatch,
        "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None))"
        " after connection broken by 'NewConnectionError(...: Failed to establish a new "
        "connection: [Errno 111] Connection refused')': /simple/nope/\n"
        "ERROR: No matching distribution found for nope==9\n",
    )
    with pytest.raises(EnvironmentMissing) as info:
        pip.download(tmp_path, packages=["nope==9"], user_source="model.requirements: r.txt")
    assert info.value.exit_code == 3


def test_a_missing_requirements_file_is_exit_2(tmp_path: Path) -> None:
    from mlcd.image import wheelhouse

    with pytest.raises(UserInputError) as info:
        wheelhouse.model_requirements(tmp_path / "absent.txt", "absent.txt", [], tmp_path)
    assert info.value.message == "model.requirements: absent.txt does not exist"


@pytest.mark.parametrize("name", sorted(p.parent.name for p in ZOO.glob("*/mlcd.yaml")))
def test_the_zoo_data_is_what_make_data_writes_and_the_config_is_valid(name: str) -> None:
    from tests.zoo import make_data

    assert (ZOO / name / "data.csv").read_text("utf-8") == make_data.csv_text(name)
    loaded = config.load_config(ZOO / name / "mlcd.yaml")
    assert loaded.config.environments["staging"].strategy == "canary"
