"""The evidence bundle: result.json round trip, its schema version, and the stage runner."""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mlcd.errors import EnvironmentMissing, GateFailed, UserInputError
from mlcd.evidence import (
    RESULT_SCHEMA_VERSION,
    Bundle,
    StageOutcome,
    StageResult,
    run_stage,
    utc_now,
)

INPUTS = {"config_sha256": "c" * 64, "git_sha": "g" * 40}


def sample(stage: str = "evaluate", started: str = "2030-01-01T00:00:00.000Z") -> StageResult:
    return StageResult(
        stage=stage,
        status="pass",
        started=started,
        duration_s=1.2,
        summary="accuracy 0.95 ≥ 0.92",
        reasons=["accuracy 0.95 ≥ 0.92", "roc_auc 0.99 ≥ 0.97"],
        metrics={"accuracy": 0.95, "nested": {"n": 3}},
        artifacts={"model": "train/model.skops"},
        inputs=INPUTS,
        details={"verdict": {"passed": True}},
    )


def test_result_round_trips_through_the_file(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path)
    bundle.write(sample(), "### evaluate\n")
    data = json.loads((tmp_path / "evaluate" / "result.json").read_text("utf-8"))
    assert data["schema_version"] == RESULT_SCHEMA_VERSION
    assert set(data) >= {
        "stage", "status", "started", "duration_s", "summary", "reasons", "metrics",
        "artifacts", "inputs",
    }  # fmt: skip
    assert bundle.read("evaluate") == sample()
    assert (tmp_path / "evaluate" / "summary.md").read_text("utf-8") == "### evaluate\n"


def test_a_result_without_markdown_gets_a_default_summary(tmp_path: Path) -> None:
    Bundle(tmp_path).write(sample(), "")
    text = (tmp_path / "evaluate" / "summary.md").read_text("utf-8")
    assert text.startswith("### ✅ evaluate: accuracy 0.95 ≥ 0.92")
    assert "- roc_auc 0.99 ≥ 0.97" in text


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    data = sample().to_json() | {"schema_version": RESULT_SCHEMA_VERSION + 1}
    with pytest.raises(UserInputError, match="result schema version 2") as caught:
        StageResult.from_json(data, tmp_path / "result.json")
    assert caught.value.exit_code == 2
    assert caught.value.hint is not None


def test_a_result_without_version_is_read_as_the_current_one(tmp_path: Path) -> None:
    data = sample().to_json()
    del data["schema_version"]
    assert StageResult.from_json(data, tmp_path) == sample()


@pytest.mark.parametrize(
    ("change", "drop", "message"),
    [
        ({"status": "maybe"}, None, "unknown status 'maybe'"),
        ({"duration_s": "slow"}, None, "malformed result.json"),
        ({}, "summary", "malformed result.json"),
        ({"reasons": 5}, None, "malformed result.json"),
    ],
)
def test_malformed_results_are_input_errors(
    tmp_path: Path, change: dict[str, object], drop: str | None, message: str
) -> None:
    data = sample().to_json() | change
    if drop:
        del data[drop]
    with pytest.raises(UserInputError, match=message) as caught:
        StageResult.from_json(data, tmp_path / "result.json")
    assert str(tmp_path / "result.json") in caught.value.message


def test_unreadable_or_non_object_result_files(tmp_path: Path) -> None:
    (tmp_path / "lint").mkdir()
    (tmp_path / "lint" / "result.json").write_text("{not json", "utf-8")
    with pytest.raises(UserInputError, match="unreadable result"):
        Bundle(tmp_path).read("lint")
    (tmp_path / "lint" / "result.json").write_text("[1, 2]", "utf-8")
    with pytest.raises(UserInputError, match="not an object"):
        Bundle(tmp_path).read("lint")


def test_require_names_the_missing_stage_and_what_to_run(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path)
    assert bundle.read("train") is None
    with pytest.raises(UserInputError) as caught:
        bundle.require("train", by="evaluate")
    assert "`mlcd evaluate` needs the output of `mlcd train`" in caught.value.message
    assert caught.value.hint == "run `mlcd train` first (or `mlcd run`), with the same --out"
    bundle.write(sample("train"), "")
    assert bundle.require("train", by="evaluate").stage == "train"


def test_stages_are_listed_in_the_order_they_started(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path)
    bundle.write(sample("train", "2030-01-01T00:00:00.200Z"), "")
    bundle.write(sample("evaluate", "2030-01-01T00:00:00.900Z"), "")
    bundle.write(sample("lint", "2030-01-01T00:00:00.100Z"), "")
    (tmp_path / "not-a-stage").mkdir()
    assert [r.stage for r in bundle.stages()] == ["lint", "train", "evaluate"]
    assert Bundle(tmp_path / "missing").stages() == []


def test_utc_now_has_milliseconds_and_sorts() -> None:
    first = utc_now()
    assert first.endswith("Z")
    assert len(first) == len("2030-01-01T00:00:00.000Z")
    assert utc_now() >= first


def test_relative_paths_inside_and_outside_the_bundle(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path / "run")
    assert bundle.relative(tmp_path / "run" / "lint" / "lint.sarif") == "lint/lint.sarif"
    assert bundle.relative(tmp_path / "elsewhere.txt") == str(tmp_path / "elsewhere.txt")


def test_run_stage_records_a_passing_outcome(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path)
    outcome = StageOutcome(
        status="pass", summary="fine", reasons=["r"], metrics={"m": 1}, markdown="# md\n"
    )
    result = run_stage(bundle, "lint", lambda: outcome, inputs=INPUTS)
    assert result.status == "pass"
    assert result.inputs == INPUTS
    assert result.duration_s >= 0
    assert bundle.read("lint") == result
    assert bundle.summary_markdown("lint") == "# md\n"


def test_run_stage_records_a_failing_gate_without_raising(tmp_path: Path) -> None:
    result = run_stage(
        Bundle(tmp_path), "test", lambda: StageOutcome("fail", "1 failed"), inputs=INPUTS
    )
    assert result.status == "fail"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UserInputError("bad input", hint="fix it", problems=["p1"]), "error"),
        (EnvironmentMissing("no docker", hint="install docker"), "error"),
        (GateFailed("rolled back"), "fail"),
    ],
)
def test_run_stage_records_an_error_and_raises_it_again(
    tmp_path: Path, error: Exception, status: str
) -> None:
    bundle = Bundle(tmp_path)

    def body() -> StageOutcome:
        raise error

    with pytest.raises(type(error)):
        run_stage(bundle, "build", body, inputs=INPUTS)
    recorded = bundle.read("build")
    assert recorded is not None
    assert recorded.status == status
    assert recorded.summary == str(error)
    assert recorded.details["exit_code"] == getattr(error, "exit_code", None)
    if isinstance(error, UserInputError):
        assert recorded.reasons == ["p1", "hint: fix it"]


def _refuse_new_files(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """As a read-only mount would: no new file in `folder` (root ignores chmod)."""
    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        where = Path(kwargs.get("dir") or ".").absolute()
        if folder in (where, *where.parents):
            raise OSError(errno.EROFS, "Read-only file system", str(where))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_an_unwritable_run_folder_stops_the_stage_before_its_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = Bundle(tmp_path / "out")
    _refuse_new_files(monkeypatch, tmp_path / "out")
    ran: list[str] = []

    def body() -> StageOutcome:
        ran.append("body")
        return StageOutcome("pass", "done")

    with pytest.raises(EnvironmentMissing) as caught:
        run_stage(bundle, "train", body, inputs={})
    assert ran == []
    assert caught.value.exit_code == 3
    assert f"cannot write the run folder {tmp_path / 'out' / 'train'}" in caught.value.message
    assert "Read-only file system" in caught.value.message


def test_other_folders_a_stage_writes_are_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_new_files(monkeypatch, tmp_path / "state")
    with pytest.raises(EnvironmentMissing, match="the state folder of staging"):
        run_stage(
            Bundle(tmp_path / "out"),
            "deploy-staging",
            lambda: StageOutcome("pass", "done"),
            inputs={},
            writable=[(tmp_path / "state" / "staging", "the state folder of staging", "fix it")],
        )


def test_a_write_that_fails_in_the_body_is_exit_3_with_the_path(tmp_path: Path) -> None:
    def body() -> StageOutcome:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out/m.skops"))

    with pytest.raises(EnvironmentMissing) as caught:
        run_stage(Bundle(tmp_path / "out"), "train", body, inputs={})
    assert (
        caught.value.message == f"cannot write {tmp_path / 'out/m.skops'}: No space left on device"
    )
    recorded = Bundle(tmp_path / "out").read("train")
    assert recorded is not None
    assert (recorded.status, recorded.details["exit_code"]) == ("error", 3)


def test_other_os_errors_are_not_disguised(tmp_path: Path) -> None:
    def body() -> StageOutcome:
        raise FileNotFoundError(errno.ENOENT, "No such file", "x")

    with pytest.raises(FileNotFoundError):
        run_stage(Bundle(tmp_path / "out"), "train", body, inputs={})
