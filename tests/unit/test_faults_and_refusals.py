"""Issue 22 in units: arguments checked before anything moves, a model version resolved to its
release, kill points that fire exactly where named, strict numeric query parameters."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from mlcd import releases
from mlcd.errors import UserInputError
from mlcd.registry import LocalRegistry
from mlcd.rollout import killpoints
from mlcd.serve.app import App
from mlcd.serve.model import load
from mlcd.stages.deploy import check_release_argument
from tests.support.models import make_model_dir

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("empty", ["", " ", "\t"])
def test_an_empty_release_is_refused(empty: str) -> None:
    with pytest.raises(UserInputError, match="--release is empty"):
        check_release_argument(empty)


@pytest.mark.parametrize("given", [None, "0.1.0", "v1"])
def test_a_named_or_absent_release_passes_the_argument_check(given: str | None) -> None:
    check_release_argument(given)


def _registry(tmp_path: Path, released: int) -> LocalRegistry:
    """A registry with two model versions; the first has `released` releases."""
    registry = LocalRegistry(tmp_path / "registry")
    for index in range(2):
        model = tmp_path / f"model-{index}.bin"
        model.write_bytes(uuid.uuid4().bytes)
        record = registry.register(
            model_file=model, metadata={"n": index}, metrics={}, verdict={"passed": True}
        )
        for _ in range(released if index == 0 else 0):
            registry.append(
                record.version,
                releases.RELEASES,
                {"version": releases.next_version(registry), "image": "x@sha256:" + "a" * 64},
            )
    return registry


def test_a_model_version_names_its_newest_release(tmp_path: Path) -> None:
    registry = _registry(tmp_path, released=2)
    assert releases.resolve(registry, "v1") == "0.1.1"
    assert releases.resolve(registry, "0.1.0") == "0.1.0"
    assert releases.resolve(registry, "v2") == "v2"  # no release: the model version itself


def test_an_unknown_name_is_refused_with_the_releases_and_versions(tmp_path: Path) -> None:
    registry = _registry(tmp_path, released=1)
    with pytest.raises(UserInputError) as caught:
        releases.resolve(registry, "v9")
    assert "no release and no model version `v9`" in caught.value.message
    assert caught.value.hint == "releases: 0.1.0; model versions: v1, v2"


def test_a_kill_point_fires_only_where_and_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(killpoints.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setattr(killpoints, "_PASSED", {})
    monkeypatch.delenv(killpoints.KILL_AT, raising=False)
    killpoints.checkpoint("after-route")
    assert kills == []
    monkeypatch.setenv(killpoints.KILL_AT, "after-route#2")
    killpoints.checkpoint("before-route")
    killpoints.checkpoint("after-route")
    assert kills == []
    killpoints.checkpoint("after-route")
    assert [sig for _, sig in kills] == [signal.SIGKILL]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> App:
    served = load(make_model_dir(tmp_path_factory.mktemp("m"), "logreg"))
    application = App(served, workers=1, recent_capacity=10)
    application.ready = True
    return application


@pytest.mark.parametrize(
    "query",
    ["since=nan", "since=inf", "since=-inf", "since=1e999", "since=0x10", "since=%201",
     "limit=1_0", "limit=-1", "limit=%205", "limit=1.5", "limit=nan"],
)  # fmt: skip
def test_numeric_query_parameters_are_strict(app: App, query: str) -> None:
    response = app.handle_now("GET", f"/v1/recent-predictions?{query}")
    assert response.status == 400, query
    assert b"error" in response.body


def test_plain_numbers_are_taken(app: App) -> None:
    for query in ("since=0", "since=1712345678.25", "limit=0", "limit=5&since=-1"):
        assert app.handle_now("GET", f"/v1/recent-predictions?{query}").status == 200, query


def test_the_report_and_the_run_page_show_the_record_and_the_refusal(tmp_path: Path) -> None:
    from mlcd import report, runreport
    from mlcd.evidence import Bundle, StageResult

    bundle = Bundle(tmp_path / ".mlcd")
    bundle.write(
        StageResult(
            stage="deploy-production",
            status="pass",
            started="2026-12-06T10:00:00Z",
            duration_s=30.0,
            summary="0.1.4 is live in production (blue-green); 0.1.3 retired",
            details={"env": "production", "version": "0.1.4", "outcome": "promoted"},
        ),
        "",
    )
    bundle.write(
        StageResult(
            stage="deploy-production-refused",
            status="error",
            started="2026-12-06T11:00:00Z",
            duration_s=0.1,
            summary="no release 9.9.9 in the model registry (registry)",
            details={"exit_code": 2},
        ),
        "",
    )
    markdown = report.render_markdown(bundle)
    assert "0.1.4 is live in production" in markdown
    assert "no release 9.9.9" in markdown
    page = runreport.render_html(bundle)
    assert "0.1.4 is live in production" in page
    assert "no release 9.9.9" in page
