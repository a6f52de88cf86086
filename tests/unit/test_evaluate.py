"""`mlcd evaluate`: verdict, thresholds, slices, the champion comparison and the reports."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from mlcd import cli
from mlcd.context import Context
from mlcd.registry import LocalRegistry
from mlcd.stages import release
from tests.mlprojects import result, write_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "b" * 40)
    monkeypatch.delenv("MLCD_REGISTRY_PATH", raising=False)
    monkeypatch.delenv("MLCD_REUSE", raising=False)


def run(command: str, config: Path, out: Path, *extra: str) -> int:
    return cli.main([command, "--config", str(config), "--out", str(out), *extra])


def train_and_evaluate(config: Path, out: Path, *extra: str) -> int:
    assert run("train", config, out) == 0
    return run("evaluate", config, out, *extra)


def verdict(out: Path) -> dict:
    return json.loads((out / "evaluate/verdict.json").read_text())


def test_example_project_passes_and_metrics_repeat(tmp_path: Path) -> None:
    """The acceptance run on the example (model/), with its own config, twice."""
    project = tmp_path / "model"
    shutil.copytree(ROOT / "model", project, ignore=shutil.ignore_patterns(".mlcd*"))
    config = project / "mlcd.yaml"
    assert train_and_evaluate(config, tmp_path / "one") == 0
    assert train_and_evaluate(config, tmp_path / "two", "--no-register") == 0
    first, second = result(tmp_path / "one", "evaluate"), result(tmp_path / "two", "evaluate")
    assert first["metrics"] == second["metrics"]
    assert first["details"]["intervals"] == second["details"]["intervals"]
    assert first["metrics"]["accuracy"] >= 0.92
    assert first["details"]["registry"]["version"] == "v1"
    assert second["details"]["registry"]["registered"] is False
    assert (project / ".mlcd-registry/versions/v1/model.skops").is_file()


def test_verdict_without_thresholds_has_one_line_per_check(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p", evaluate={"compare-to": "none"})
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 0
    v = verdict(out)
    assert v["passed"] is True
    assert [c["kind"] for c in v["checks"]] == ["threshold", "champion"]
    for check in v["checks"]:
        assert {"metric", "value", "bound", "passed", "line", "kind"} <= set(check)
    assert "no thresholds configured" in v["checks"][0]["line"]
    assert "compare-to: none" in v["checks"][1]["line"]
    metrics = result(out, "evaluate")["metrics"]
    assert set(metrics) == {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "confusion_matrix",
    }
    assert sum(map(sum, metrics["confusion_matrix"])) == v["holdout_rows"]


def test_unmet_threshold_fails_and_names_metric_value_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path / "p", evaluate={"thresholds": {"accuracy": {"min": 0.999}}})
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 1
    accuracy = result(out, "evaluate")["metrics"]["accuracy"]
    summary = (out / "evaluate/summary.md").read_text()
    assert f"accuracy {accuracy:.4f} fails ≥ 0.999" in summary
    assert "| accuracy | " in summary
    assert "**fail**" in summary
    assert result(out, "evaluate")["status"] == "fail"
    assert verdict(out)["passed"] is False
    assert "fails ≥ 0.999" in capsys.readouterr().out


def test_unknown_metric_in_config_is_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Known from the config alone, so every command refuses it before doing anything."""
    config = write_project(tmp_path / "p", evaluate={"thresholds": {"rmse": {"max": 1}}})
    assert run("train", config, tmp_path / "out") == 2
    assert not (tmp_path / "out" / "train").exists()
    err = capsys.readouterr().err
    assert re.search(
        r"mlcd\.yaml:\d+:\d+: evaluate\.thresholds\.rmse: `rmse` is a regression metric", err
    ), err


def test_evaluate_before_train_is_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path / "p")
    assert run("evaluate", config, tmp_path / "out") == 2
    assert "mlcd train" in capsys.readouterr().err


def test_no_champion_passes_with_reason(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p", evaluate={"max-regression": {"roc_auc": 0.01}})
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 0
    champion = [c for c in verdict(out)["checks"] if c["kind"] == "champion"]
    assert champion[0]["passed"]
    assert "no champion yet" in champion[0]["line"]
    assert "no champion yet" in (out / "evaluate/summary.md").read_text()


def _register_champion(registry: Path, config: Path, out: Path) -> str:
    """Train with `config`, register that model and make it the champion."""
    assert train_and_evaluate(config, out) == 0
    version = result(out, "evaluate")["details"]["registry"]["version"]
    LocalRegistry(registry).set_alias("champion", version)
    return str(version)


def test_candidate_equal_to_champion_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "registry"
    monkeypatch.setenv("MLCD_REGISTRY_PATH", str(registry))
    evaluate = {"max-regression": {"roc_auc": 0.0, "accuracy": 0.0}}
    config = write_project(tmp_path / "p", evaluate=evaluate)
    _register_champion(registry, config, tmp_path / "first")
    out = tmp_path / "second"
    assert train_and_evaluate(config, out) == 0
    v = verdict(out)
    assert v["comparison"]["status"] == "compared"
    assert v["comparison"]["champion"] == "v1"
    rows = {r["metric"]: r for r in v["comparison"]["rows"]}
    assert rows["roc_auc"]["difference"] == 0.0
    assert rows["roc_auc"]["interval"] == [0.0, 0.0]
    summary = (out / "evaluate/summary.md").read_text()
    assert "Candidate against champion v1" in summary
    assert "inside the noise" in summary


def test_champion_better_than_candidate_fails_with_difference_and_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry"
    monkeypatch.setenv("MLCD_REGISTRY_PATH", str(registry))
    evaluate = {"max-regression": {"roc_auc": 0.01, "accuracy": 0.01}}
    good = write_project(tmp_path / "good", evaluate=evaluate)
    _register_champion(registry, good, tmp_path / "champion")
    # the same data and split, but a model that ignores all but the weakest feature
    weak = """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    def build_model():
        pick = ColumnTransformer([("keep", "passthrough", ["mean smoothness"])])
        return Pipeline([("pick", pick), ("classify", LogisticRegression())])
    """
    bad = write_project(tmp_path / "bad", code=weak, evaluate=evaluate)
    out = tmp_path / "out"
    assert train_and_evaluate(bad, out) == 1
    v = verdict(out)
    failed = [c for c in v["checks"] if not c["passed"]]
    assert {c["metric"] for c in failed} == {"roc_auc", "accuracy"}
    roc = next(c for c in failed if c["metric"] == "roc_auc")
    assert roc["worse_by"] > 0.01
    low, high = roc["interval"]
    assert low <= roc["difference"] <= high < 0
    summary = (out / "evaluate/summary.md").read_text()
    assert f"{roc['difference']:+.4f}" in summary
    assert f"[{low:.4f}, {high:.4f}]" in summary
    assert "outside the noise" in summary
    assert "worse than champion v1" in capsys.readouterr().out


def test_champion_needing_other_features_is_not_comparable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "registry"
    monkeypatch.setenv("MLCD_REGISTRY_PATH", str(registry))
    from tests.mlprojects import classification_frame

    first = write_project(tmp_path / "a")
    _register_champion(registry, first, tmp_path / "one")
    frame = classification_frame().drop(columns=["worst area"])
    second = write_project(tmp_path / "b", frame=frame)
    out = tmp_path / "two"
    assert train_and_evaluate(second, out) == 0
    check = next(c for c in verdict(out)["checks"] if c["kind"] == "champion")
    assert "not comparable" in check["line"]
    assert "worst area" in check["line"]


def test_slices_by_category_and_bins_with_thresholds(tmp_path: Path) -> None:
    evaluate = {
        "thresholds": {"r2": {"min": 0.2}, "rmse": {"max": 80}},
        "slices": [
            {"feature": "sex", "thresholds": {"mae": {"max": 1000}}},
            {
                "feature": "age",
                "bins": [0, 30, 60, 100],
                "min-rows": 30,
                "thresholds": {"r2": {"min": -5}},
            },
        ],
        "max-regression": {"rmse": 2.0},
    }
    config = write_project(tmp_path / "p", task="regression", evaluate=evaluate)
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 0
    v = verdict(out)
    labels = [s["slice"] for s in v["slices"]]
    assert labels == ["sex = f", "sex = m", "age in [0, 30)", "age in [30, 60)", "age in [60, 100]"]
    assert sum(s["rows"] for s in v["slices"][:2]) == v["holdout_rows"]
    assert sum(s["rows"] for s in v["slices"][2:]) == v["holdout_rows"]
    gated = {s["slice"]: s["gated"] for s in v["slices"]}
    assert gated["sex = f"] is True
    assert any(not g for g in gated.values())  # a small age bin is reported, not gated
    kinds = [c["kind"] for c in v["checks"]]
    assert kinds.count("slice-threshold") == 5
    assert set(result(out, "evaluate")["metrics"]) == {"rmse", "mae", "r2"}
    summary = (out / "evaluate/summary.md").read_text()
    assert "#### Slices" in summary
    assert "age in [30, 60)" in summary


def test_regression_threshold_failure(tmp_path: Path) -> None:
    config = write_project(
        tmp_path / "p", task="regression", evaluate={"thresholds": {"rmse": {"max": 10}}}
    )
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 1
    rmse = result(out, "evaluate")["metrics"]["rmse"]
    assert f"rmse {rmse:.4f} fails ≤ 10" in (out / "evaluate/summary.md").read_text()


def test_slice_feature_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_project(tmp_path / "p", evaluate={"slices": [{"feature": "colour"}]})
    assert run("train", config, tmp_path / "out") == 0
    assert run("evaluate", config, tmp_path / "out") == 2
    assert "evaluate.slices[0].feature `colour`" in capsys.readouterr().err


def test_reports_are_written(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p", evaluate={"thresholds": {"f1": {"min": 0.5}}})
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 0
    folder = out / "evaluate"
    artifacts = result(out, "evaluate")["artifacts"]
    for name in (
        "verdict",
        "report",
        "model_card",
        "plot_roc",
        "plot_precision_recall",
        "plot_confusion_matrix",
        "plot_calibration",
    ):
        assert (out / artifacts[name]).is_file(), name
    page = (folder / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 4
    summary = (folder / "summary.md").read_text()
    chart = re.search(r"```mermaid\n(.*?)```", summary, re.S)
    assert chart is not None
    assert "xychart-beta" in chart.group(1)
    assert "bar [" in chart.group(1)
    card = (folder / "model_card.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "sklearn"
    index = front["model-index"][0]
    assert index["name"] == "demo-classification"
    metrics = {m["type"]: m["value"] for m in index["results"][0]["metrics"]}
    assert metrics["f1"] == pytest.approx(result(out, "evaluate")["metrics"]["f1"], abs=1e-6)
    for heading in (
        "## Model Details",
        "## Uses",
        "## Bias, Risks, and Limitations",
        "## Training Details",
        "## Evaluation",
    ):
        assert heading in card


def test_regression_reports(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p", task="regression")
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 0
    artifacts = result(out, "evaluate")["artifacts"]
    assert {"plot_residuals", "plot_predicted_vs_actual"} <= set(artifacts)
    assert "tabular-regression" in (out / "evaluate/model_card.md").read_text()


def test_tampered_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import skops.io as sio

    from tests.unit.test_modelio import Custom

    config = write_project(tmp_path / "p")
    out = tmp_path / "out"
    assert run("train", config, out) == 0
    sio.dump(Custom(), out / "train/model.skops")
    assert run("evaluate", config, out) == 1
    assert "untrusted type: tests.unit.test_modelio.Custom" in capsys.readouterr().err


def test_release_registers_what_evaluate_left_unregistered(tmp_path: Path) -> None:
    """The GitHub workflow evaluates with --no-register (pull requests write nothing); the
    release job's `mlcd release` then registers the evaluated model as evaluate would have,
    and finds it again (same fingerprint) rather than registering twice."""
    config = write_project(tmp_path / "p", evaluate={"compare-to": "none"})
    out = tmp_path / "out"
    assert train_and_evaluate(config, out, "--no-register") == 0
    ctx = Context(config_path=config, out=out)
    registry = LocalRegistry(tmp_path / "p" / ".mlcd-registry")
    assert registry.versions() == []
    version, how = release._register(ctx, registry)
    assert (version, how) == (
        "v1",
        "registered the evaluated model as v1 (evaluate ran with --no-register)",
    )
    [record] = registry.versions()
    assert record.verdict["passed"] is True
    assert record.metrics == result(out, "evaluate")["metrics"]
    again, how = release._register(ctx, registry)
    assert again == "v1"
    assert "same data, code and params" in how
    assert len(registry.versions()) == 1


def test_documents_render_from_the_verdict_on_disk(tmp_path: Path) -> None:
    """The renderers are pure functions of model.json and verdict.json: what they make from
    the files read back is what the stage wrote (nothing is added to the verdict later)."""
    from mlcd.evaluation import render

    config = write_project(tmp_path / "p", evaluate={"thresholds": {"accuracy": {"min": 0.5}}})
    out = tmp_path / "out"
    assert train_and_evaluate(config, out) == 0
    meta = json.loads((out / "train/model.json").read_text())
    v = verdict(out)
    assert render.summary_markdown(meta, v) == (out / "evaluate/summary.md").read_text()
    # verdict.json is written with sorted keys, so the card's metrics come in another order
    card = render.model_card(meta, v).splitlines()
    assert sorted(card) == sorted((out / "evaluate/model_card.md").read_text().splitlines())
    assert result(out, "evaluate")["summary"] == v["summary"]
