"""The stage contract: each stage's details read as a model, dumped back unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlcd import contracts
from mlcd.contracts import (
    BuildDetails,
    DeployDetails,
    EvaluateDetails,
    ReleaseDetails,
    TrainDetails,
    details,
    read_details,
    train_files,
)
from mlcd.errors import UserInputError
from mlcd.evidence import Bundle, StageResult
from mlcd.serve import model as served
from tests.runbundle import STAGES, write_bundle

pytestmark = pytest.mark.unit


def result(stage: str, given: dict[str, Any]) -> StageResult:
    return StageResult(
        stage=stage, status="pass", started="2030-01-01T00:00:00.000Z", duration_s=1.0,
        summary="s", details=given,
    )  # fmt: skip


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_of_a_bundle_reads_and_dumps_back_the_same(tmp_path: Path, stage: str) -> None:
    bundle = write_bundle(tmp_path / "b")
    written = json.loads((tmp_path / "b" / stage / "result.json").read_text("utf-8"))["details"]
    model = read_details(bundle, stage)
    assert model is not None
    assert isinstance(model, contracts.model_for(stage))
    assert model.dump() == written


def test_a_writer_gets_exactly_the_dict_it_set() -> None:
    made = TrainDetails(fingerprint="f", fit_seconds=3, reused_from=None, project_types=[])
    assert made.dump() == {
        "fingerprint": "f",
        "fit_seconds": 3,
        "reused_from": None,
        "project_types": [],
    }
    assert isinstance(made.dump()["fit_seconds"], int)  # not turned into 3.0


def test_nested_and_open_ended_details_survive() -> None:
    given = {
        "image": "x:build-1",
        "contract": {"skipped": False, "passed": True, "rows": 3, "agree": 3, "new": 1},
        "model_wheels": ["a==1"],
    }
    build = details(result("build", given), BuildDetails)
    assert build.contract.passed is True
    assert build.dump() == given


def test_a_real_builds_contract_test_reads_strictly() -> None:
    # as `mlcd build` writes it: forms maps each request form to the rows that agree
    contract = {"skipped": False, "passed": True, "rows": 2, "agree": 2, "ready_seconds": 1.2,
                "health": "healthy", "user": "10001:10001", "problems": [],
                "forms": {"instances": 2, "records": 2}}  # fmt: skip
    build = details(
        result("build", {"contract": contract, "wheels": 40}), BuildDetails, strict=True
    )
    assert build.contract.forms == {"instances": 2, "records": 2}
    assert build.dump()["contract"] == contract


def test_lenient_reading_drops_only_the_wrong_key() -> None:
    given = {"version": ["not", "text"], "image": "n@sha256:1", "model_version": "v2"}
    release = details(result("release", given), ReleaseDetails)
    assert release.version == ""
    assert (release.image, release.model_version) == ("n@sha256:1", "v2")


def test_strict_reading_names_the_file_and_key() -> None:
    given = {"registry": {"version": 3}}
    with pytest.raises(UserInputError, match=r"evaluate/result\.json: details\.registry\.version"):
        details(result("evaluate", given), EvaluateDetails, strict=True)


def test_an_errored_stage_reads_as_its_exit_code() -> None:
    build = details(result("build", {"exit_code": 3}), BuildDetails)
    assert build.exit_code == 3
    assert build.image == ""


def test_first_and_scalars_keep_older_names() -> None:
    deploy = details(result("deploy-x", {"endpoint": "http://h:1", "size": 3}), DeployDetails)
    assert deploy.http_url == "http://h:1"
    assert deploy.first("size_bytes", "size") == 3
    assert deploy.scalars(("size", "endpoint", "absent")) == {"size": "3", "endpoint": "http://h:1"}


def test_train_files_follow_the_artifacts(tmp_path: Path) -> None:
    bundle = Bundle(tmp_path)
    assert train_files(bundle).model == tmp_path / "train" / contracts.MODEL_FILE
    bundle.write(
        StageResult(
            stage="train", status="pass", started="t", duration_s=1, summary="s",
            artifacts={"model": "train/other.skops"},
        ),
        "",
    )  # fmt: skip
    files = train_files(bundle)
    assert files.model == tmp_path / "train" / "other.skops"
    assert files.meta == tmp_path / "train" / contracts.META_FILE


def test_the_server_uses_the_same_file_names() -> None:
    # the serving image has no pydantic, so serve.model keeps its own copy of the names
    assert (served.MODEL_FILE, served.META_FILE) == (contracts.MODEL_FILE, contracts.META_FILE)
