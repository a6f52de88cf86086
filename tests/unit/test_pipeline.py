"""`mlcd run` with stand-in stages: order, stop at the first failure, --keep-going,
--only/--skip, run.json and the run summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcd import pipeline
from mlcd.cli import main
from mlcd.context import Context
from mlcd.errors import EnvironmentMissing, MlcdError, UserInputError
from mlcd.evidence import StageOutcome, StageResult
from mlcd.pipeline import Step
from tests.unit.test_config import VALID

Behaviour = Callable[[], StageOutcome]


def ok(summary: str = "fine") -> Behaviour:
    return lambda: StageOutcome("pass", summary)


def gate(*reasons: str) -> Behaviour:
    return lambda: StageOutcome("fail", "the gate said no", reasons=list(reasons))


def broken(error: MlcdError) -> Behaviour:
    def body() -> StageOutcome:
        raise error

    return body


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)  # no git subprocess in unit tests
    monkeypatch.delenv("NO_COLOR", raising=False)
    config = tmp_path / "mlcd.yaml"
    config.write_text(VALID, "utf-8")
    # the files VALID names, so that the run's pre-flight checks pass (they are not run)
    (tmp_path / "data.csv").write_text("x,y\n1,0\n", "utf-8")
    (tmp_path / "train.py").write_text("def build_model():\n    return None\n", "utf-8")
    (tmp_path / "tests").mkdir()
    return config


def use_stages(monkeypatch: pytest.MonkeyPatch, **stages: Behaviour) -> list[str]:
    """Replace the pipeline's stages; return the list the ran stages are appended to."""
    ran: list[str] = []

    def make(name: str, body: Behaviour) -> Callable[[Context], StageResult]:
        def run(ctx: Context) -> StageResult:
            ran.append(name)
            ctx.progress(f"doing {name}")
            return ctx.run_stage(name, body)

        return run

    monkeypatch.setattr(
        pipeline, "steps", lambda _ctx: [Step(n, make(n, b)) for n, b in stages.items()]
    )
    return ran


def run(project: Path, *extra: str) -> int:
    return main(["run", "--config", str(project), "--out", str(project.parent / "out"), *extra])


def run_json(project: Path) -> dict[str, object]:
    data = json.loads((project.parent / "out" / "run.json").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def test_all_stages_pass(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = use_stages(monkeypatch, lint=ok(), test=ok("5 passed"), train=ok())
    assert run(project) == 0
    assert ran == ["lint", "test", "train"]
    out = capsys.readouterr().out
    assert out.startswith(f"mlcd run: 3 stages on {project.resolve()}\n▶ lint …\n")
    assert "  lint: doing lint" in out  # progress detail, plain (capsys is no terminal)
    assert "\x1b" not in out
    summary = out[out.index("stage  ") :]
    assert [line.split()[:2] for line in summary.splitlines()[1:4]] == [
        ["lint", "pass"], ["test", "pass"], ["train", "pass"],
    ]  # fmt: skip
    assert "run passed in" in out
    assert "(exit 0)" in out
    record = run_json(project)
    assert record["status"] == "pass"
    assert record["exit_code"] == 0
    assert record["stopped_at"] is None
    assert record["inputs"] == {
        "config_sha256": record["inputs"]["config_sha256"],  # type: ignore[index]
        "git_sha": "a" * 40,
    }
    assert [s["stage"] for s in record["stages"]] == ["lint", "test", "train"]  # type: ignore[attr-defined,index]


def test_stops_at_the_first_failing_gate(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = use_stages(monkeypatch, lint=ok(), test=gate("FAILED t::x", "coverage 50%"), train=ok())
    assert run(project) == 1
    assert ran == ["lint", "test"]
    out = capsys.readouterr().out
    assert "run stopped at test" in out
    assert "test fail:\n  - FAILED t::x\n  - coverage 50%" in out
    assert run_json(project)["stopped_at"] == "test"
    assert run_json(project)["status"] == "fail"


def test_keep_going_runs_the_rest_and_still_fails(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = use_stages(
        monkeypatch,
        lint=gate("E501"),
        test=broken(EnvironmentMissing("no docker", hint="apt-get install docker.io")),
        train=ok(),
    )
    assert run(project, "--keep-going") == 1  # the first failure decides the exit code
    assert ran == ["lint", "test", "train"]
    captured = capsys.readouterr()
    assert "run failed" in captured.out
    assert "test error:\n  - hint: apt-get install docker.io" in captured.out
    record = run_json(project)
    assert record["stopped_at"] is None
    statuses = [(s["stage"], s["status"]) for s in record["stages"]]  # type: ignore[attr-defined]
    assert statuses == [("lint", "fail"), ("test", "error"), ("train", "pass")]


def test_an_error_stops_the_run_with_its_own_exit_code(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = use_stages(
        monkeypatch,
        lint=ok(),
        build=broken(EnvironmentMissing("no Docker engine", hint="make system")),
        scan=ok(),
    )
    assert run(project) == 3
    assert ran == ["lint", "build"]
    captured = capsys.readouterr()
    assert "run stopped at build" in captured.out
    assert captured.err == "mlcd: environment: no Docker engine\n  hint: make system\n"
    record = run_json(project)
    assert record["exit_code"] == 3
    assert record["status"] == "error"


def test_json_format_prints_only_json_on_stdout(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_stages(monkeypatch, lint=ok(), test=gate("x"))
    assert run(project, "--format", "json") == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["status"] == "fail"
    assert [s["stage"] for s in data["stages"]] == ["lint", "test"]
    assert "▶ lint" in captured.err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--only", "test"], ["test"]),
        (["--only", "train, lint"], ["lint", "train"]),  # pipeline order, spaces allowed
        (["--skip", "lint,train"], ["test"]),
        (["--only", "lint,test", "--skip", "test"], ["lint"]),
    ],
)
def test_only_and_skip_select_stages_in_pipeline_order(
    project: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], expected: list[str]
) -> None:
    ran = use_stages(monkeypatch, lint=ok(), test=ok(), train=ok())
    assert run(project, *options) == 0
    assert ran == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--only", "lnt"], "--only names unknown stage(s): lnt"),
        (["--skip", "test,deploy"], "--skip names unknown stage(s): deploy"),
        (["--only", "lint", "--skip", "lint"], "--only and --skip leave no stage to run"),
    ],
)
def test_selection_errors_are_exit_2_and_list_the_stages(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    ran = use_stages(monkeypatch, lint=ok(), test=ok())
    assert run(project, *options) == 2
    assert ran == []
    err = capsys.readouterr().err
    assert message in err
    assert "hint: the stages are: lint, test" in err


def test_a_broken_config_stops_the_run_before_any_stage(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = use_stages(monkeypatch, lint=ok())
    project.write_text(VALID + "lnt: {}\n", "utf-8")
    assert run(project) == 2
    assert ran == []
    assert "did you mean `lint`?" in capsys.readouterr().err
    assert not (project.parent / "out" / "run.json").exists()


def test_the_real_pipeline_lists_lint_then_test(project: Path) -> None:
    ctx = Context(config_path=project, out=project.parent / "out")
    names = [step.name for step in pipeline.steps(ctx)]
    assert names[:2] == ["lint", "test"]
    assert len(names) == len(set(names))


def test_select_rejects_unknown_names_directly() -> None:
    steps = [Step("lint", lambda _ctx: None), Step("test", lambda _ctx: None)]  # type: ignore[arg-type,return-value]
    with pytest.raises(UserInputError, match="unknown stage"):
        pipeline._select(steps, "nope", None)


def test_a_run_that_deployed_ends_with_the_urls_and_a_request_to_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    config = tmp_path / "mlcd.yaml"
    config.write_text(
        VALID.split("environments:")[0]
        + "environments:\n  staging: {}\n  production: {requires: [staging]}\n",
        "utf-8",
    )
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "holdout.csv").write_text("a,b,y\n1.5,2,0\n", "utf-8")

    def deployed(env: str, port: int) -> Behaviour:
        return lambda: StageOutcome(
            "pass", "live", details={"router": f"127.0.0.1:{port}", "version": "0.1.3"}
        )

    use_stages(
        monkeypatch,
        **{"deploy-staging": deployed("staging", 8081), "deploy-production": gate("no")},
    )
    assert main(["run", "--config", str(config), "--out", str(out), "--keep-going"]) == 1
    text = capsys.readouterr().out
    tail = text[text.index("\nenvironments:") :]
    assert "staging      http://127.0.0.1:8081/predict  (release 0.1.3;" in tail
    assert f"mlcd status staging --config {config}" in tail
    assert "production" not in tail  # its deploy failed: no URL to offer
    assert "-d '{\"instances\":[[1.5,2.0]]}'" in tail  # the first held-out row, no target


def test_a_run_without_deploys_names_no_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_stages(monkeypatch, lint=ok())
    assert run(project) == 0
    assert "environments:" not in capsys.readouterr().out


def test_a_missing_data_file_stops_the_run_before_lint(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = use_stages(monkeypatch, lint=ok(), test=ok(), train=ok())
    (project.parent / "data.csv").unlink()
    assert run(project) == 2
    assert ran == []
    err = capsys.readouterr().err
    assert f"{project}:6:9: model.data: `data.csv` does not exist" in err


def test_only_the_selected_stages_checks_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--only lint` needs no data file; `--only train` does."""
    ran = use_stages(monkeypatch, lint=ok(), test=ok(), train=ok())
    (project.parent / "data.csv").unlink()
    assert run(project, "--only", "lint") == 0
    assert ran == ["lint"]
    assert run(project, "--only", "train") == 2
    assert ran == ["lint"]


def _deploys(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """Stand in for the deploy stage: record which release each deploy was asked for."""
    asked: list[tuple[str, str | None]] = []

    def stage(ctx: Context, env: str, *, release: str | None = None, **_: object) -> StageResult:
        asked.append((env, release))
        return ctx.run_stage(f"deploy-{env}", lambda: StageOutcome("pass", f"{release} live"))

    monkeypatch.setattr(pipeline.deploy, "stage", stage)
    return asked


def test_keep_going_never_deploys_a_release_this_run_did_not_make(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stages(monkeypatch, release=gate("push refused"), **{"deploy-staging": ok()})
    asked = _deploys(monkeypatch)
    assert run(project, "--keep-going") == 1
    assert asked == []  # no older release was picked from the registry
    statuses = [(s["stage"], s["status"]) for s in run_json(project)["stages"]]  # type: ignore[attr-defined]
    assert statuses == [("release", "fail"), ("deploy-staging", "skipped")]
    skipped = json.loads((project.parent / "out/deploy-staging/result.json").read_text())
    assert "this run's release did not pass (fail)" in skipped["summary"]


def test_a_run_deploys_exactly_the_release_it_made(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = StageOutcome("pass", "0.3.0", details={"version": "0.3.0", "image": "x@sha256:1"})
    use_stages(monkeypatch, release=lambda: made, **{"deploy-staging": ok()})
    asked = _deploys(monkeypatch)
    assert run(project) == 0
    assert asked == [("staging", "0.3.0")]


def test_validate_checks_the_signing_public_key(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or unreadable `signing.verify.key` is exit 2 at validate, naming the line,
    not a failure after the build when release or deploy first read it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    project.write_text(project.read_text() + "signing:\n  verify: {key: keys/signing.pub}\n")
    line = len(project.read_text().splitlines())
    assert main(["validate", "--config", str(project)]) == 2
    err = capsys.readouterr().err
    assert f"{project}:{line}:" in err, err
    assert "signing.verify.key: `keys/signing.pub`" in err, err
    assert "cannot read it" in err, err
    key = project.parent / "keys" / "signing.pub"
    key.parent.mkdir()
    key.write_text("not a key\n")
    assert main(["validate", "--config", str(project)]) == 2
    assert "not a PEM public key" in capsys.readouterr().err
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert main(["validate", "--config", str(project)]) == 0
