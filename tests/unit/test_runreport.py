"""`<out>/report.html`: the one-page report of a whole run, from any subset of the bundle."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from mlcd.cli import main
from mlcd.evidence import Bundle
from mlcd.runreport import (
    REPORT_FILE,
    collect,
    intervals,
    render_html,
    sbom_components,
    timeline_chart,
    verdict,
    write_html,
)
from tests.runbundle import STAGES, measurement, write_bundle, write_run_json
from tests.unit.test_pipeline import ok, project, run, use_stages  # noqa: F401

HEADINGS = ("Stages", "Model", "Security scan", "Image and release", "Rollout")


def headings(page: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", h).split(" ")[0] for h in re.findall(r"<h2>(.*?)</h2>", page)]


def rows(page: str) -> dict[str, str]:
    """Stage table: name → the outcome word."""
    table = page.split('<table class="stages">', 1)[1].split("</table>", 1)[0]
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]:
        cells = [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td>(.*?)</td>", row)]
        found[cells[0][0]] = " ".join(cells[1])
    return found


def test_a_full_run_has_every_part(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run")
    write_run_json(bundle.root)
    page = render_html(bundle)
    assert headings(page) == ["Stages", "Model", "Security", "Image", "Rollout"]
    assert "Delivered: release 0.1.1 is live in staging, production" in page
    assert set(rows(page).values()) == {"passed"}
    assert list(rows(page)) == list(STAGES)
    # model: metrics chart with champion and thresholds, comparison, the evaluation's PNGs
    assert 'aria-label="metrics of the candidate and the champion"' in page
    assert "champion v1" in page
    assert "inside the noise" in page
    assert page.count('src="data:image/png;base64,') == 2
    assert 'href="evaluate/report.html"' in page
    # scan: counts by severity, the suppression with its reason, SBOM size
    assert "critical 1" in page
    assert "low 3" in page
    assert "CVE-2030-0001" in page
    assert "not reachable: no TLS in the server" in page
    assert "141 components (CycloneDX)" in page
    # image and release
    assert "366.2 MB" in page
    assert "sha256:" + "3" * 64 in page
    assert "sha256:" + "9" * 64 in page
    # rollout: a timeline per environment, with the limits
    assert page.count('aria-label="rollout timeline"') == 2
    assert "#3 canary 50%" in page
    assert "users&#x27; traffic on the new version" in page


def test_the_page_stands_alone(tmp_path: Path) -> None:
    page = render_html(write_bundle(tmp_path / "run"))
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page
    assert "url(" not in page


@pytest.mark.parametrize("missing", STAGES)
def test_each_stage_can_be_missing(tmp_path: Path, missing: str) -> None:
    bundle = write_bundle(tmp_path / "run", [s for s in STAGES if s != missing])
    page = render_html(bundle, planned=STAGES)  # the config names the environments
    assert rows(page)[missing] == "not run"
    assert headings(page) == ["Stages", "Model", "Security", "Image", "Rollout"]
    if missing not in ("lint", "test", "train"):  # the others have a section of their own
        assert "did not run in this run" in page


@pytest.mark.parametrize(
    "subset",
    [
        (),
        ("lint",),
        ("lint", "test"),
        ("evaluate",),
        ("build", "release"),
        ("scan",),
        ("release", "deploy-production"),
        ("deploy-staging",),
        *itertools.islice(itertools.combinations(STAGES, 4), 0, None, 17),
    ],
)
def test_any_subset_renders(tmp_path: Path, subset: tuple[str, ...]) -> None:
    page = render_html(write_bundle(tmp_path / "run", subset))
    table = rows(page)
    for stage in ("lint", "test", "train", "evaluate", "build", "scan", "release"):
        assert table[stage] == ("passed" if stage in subset else "not run")
    assert page.count('aria-label="rollout timeline"') == sum(
        s.startswith("deploy-") for s in subset
    )


def test_an_empty_folder_says_so(tmp_path: Path) -> None:
    page = render_html(Bundle(tmp_path / "nothing"))
    assert "No results yet" in page
    assert 'class="verdict empty"' in page


def test_a_failed_run_names_where_it_stopped(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["lint", "test", "train", "evaluate", "build", "scan"])
    path = bundle.root / "scan" / "result.json"
    result = json.loads(path.read_text())
    result |= {"status": "fail", "summary": "1 finding fails the gate (1 CRITICAL)"}
    path.write_text(json.dumps(result))
    write_run_json(bundle.root, status="fail", stopped_at="scan")
    page = render_html(bundle)
    assert 'class="verdict fail"' in page
    assert "Stopped at scan: a gate said no" in page
    assert "1 finding fails the gate (1 CRITICAL)" in page
    assert rows(page)["scan"] == "failed"
    assert rows(page)["release"] == "not run"


def test_an_error_without_run_json_is_an_error_verdict(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["lint"])
    path = bundle.root / "lint" / "result.json"
    data = json.loads(path.read_text()) | {"status": "error", "summary": "ruff is not installed"}
    path.write_text(json.dumps(data))
    judged = verdict(collect(bundle))
    assert judged.status == "error"
    assert judged.headline == "Stopped at lint: something was missing"


def test_an_unreadable_result_is_shown_not_raised(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["lint", "scan"])
    (bundle.root / "scan" / "result.json").write_text("{not json")
    page = render_html(bundle)
    assert rows(page)["scan"] == "unreadable"
    assert "unreadable result" in page
    assert 'class="verdict error"' in page


def test_text_from_the_bundle_is_escaped(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["lint"])
    path = bundle.root / "lint" / "result.json"
    data = json.loads(path.read_text()) | {"summary": "<script>alert(1)</script> & more"}
    path.write_text(json.dumps(data))
    page = render_html(bundle)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


def test_plots_outside_the_bundle_are_not_embedded(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["evaluate"])
    outside = tmp_path / "secret.png"
    outside.write_bytes((bundle.root / "evaluate" / "roc.png").read_bytes())
    path = bundle.root / "evaluate" / "result.json"
    data = json.loads(path.read_text())
    data["artifacts"] = {"plot_roc": "../secret.png", "plot_text": "evaluate/verdict.json"}
    path.write_text(json.dumps(data))
    assert "data:image/png" not in render_html(bundle)


def test_results_of_an_earlier_run_are_marked(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["lint", "scan"])
    write_run_json(bundle.root)
    run_json = json.loads((bundle.root / "run.json").read_text())
    run_json["started"] = "2030-01-01T00:03:00.000Z"  # after lint, before scan
    (bundle.root / "run.json").write_text(json.dumps(run_json))
    view = collect(bundle)
    earlier = {r.name for r in view.rows if r.earlier}
    assert earlier == {"lint"}
    assert "earlier run" in render_html(bundle)


def test_planned_stages_set_the_rows(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["lint", "deploy-staging"])
    view = collect(bundle, ["lint", "test", "custom", "deploy-staging", "deploy-qa"])
    assert [(r.name, r.status) for r in view.rows] == [
        ("lint", "pass"),
        ("test", "not run"),
        # the rest of the pipeline is always listed, each stage in its place
        ("train", "not run"),
        ("evaluate", "not run"),
        ("build", "not run"),
        ("scan", "not run"),
        ("release", "not run"),
        ("custom", "not run"),
        ("deploy-staging", "pass"),
        ("deploy-qa", "not run"),
    ]


def test_other_results_follow_the_pipeline_in_the_order_they_started(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["lint"])
    write_bundle(tmp_path / "run", ["deploy-production"])
    for name, minute in (("rollback-production", "09"), ("promote-staging", "08")):
        data = json.loads((bundle.root / "lint" / "result.json").read_text())
        data |= {"stage": name, "started": f"2030-01-01T00:{minute}:00.000Z"}
        (bundle.root / name).mkdir()
        (bundle.root / name / "result.json").write_text(json.dumps(data))
    names = [r.name for r in collect(bundle).rows]
    assert names[-3:] == ["deploy-production", "promote-staging", "rollback-production"]


def test_intervals_per_interval_counts_from_the_judges_totals() -> None:
    def totals(cr: int, ce: int, sr: int, se: int) -> dict[str, int]:
        return {
            "canary_requests": cr,
            "canary_errors": ce,
            "stable_requests": sr,
            "stable_errors": se,
        }

    details = {
        "measurements": [
            measurement("canary 10%", "inconclusive", totals(50, 1, 450, 0), 1),
            measurement("canary 10%", "pass", totals(150, 1, 1350, 9), 2),
            measurement("canary 50%", "fail", totals(250, 11, 1450, 9), 3),
            # a new analysis (blue/green preview): the totals start again
            measurement("preview", "pass", totals(20, 0, 30, 3), 4),
        ]
    }
    found = intervals(details)
    assert [s.weight for s in found] == [10, 10, 50, 0]
    assert [s.canary_requests for s in found] == [50, 100, 100, 20]
    assert [s.canary_errors for s in found] == [1, 0, 10, 0]
    assert [s.stable_errors for s in found] == [0, 9, 0, 3]
    assert found[0].canary_error_rate == pytest.approx(0.02)
    assert found[2].canary_error_rate == pytest.approx(0.1)
    assert found[1].stable_error_rate == pytest.approx(9 / 900)
    assert found[2].reason == "canary 50%: fail"


def test_intervals_prefer_the_per_interval_keys_and_an_explicit_weight() -> None:
    entry = measurement(
        "step 2",
        "pass",
        {
            "canary_errors": 40,
            "interval_canary_errors": 2,
            "canary_requests": 900,
            "interval_canary_requests": 100,
        },
        1,
    )
    entry["weight"] = 25
    (only,) = intervals({"measurements": [entry]})
    assert (only.weight, only.canary_requests, only.canary_errors) == (25, 100, 2)
    assert only.stable_requests is None
    assert only.stable_error_rate is None


def test_intervals_of_odd_details_are_empty() -> None:
    assert intervals({}) == []
    assert intervals({"measurements": "nope"}) == []
    (odd,) = intervals({"measurements": [{"metrics": {"canary_p99_ms": "slow"}}]})
    assert odd.canary_p99_ms is None
    assert odd.weight == 0


def test_the_timeline_ends_where_the_traffic_went() -> None:
    steps = intervals(
        {"measurements": [measurement("canary 10%", "pass", {"canary_p99_ms": 12.0}, 1)]}
    )
    promoted = timeline_chart(steps, outcome="promoted", max_error_rate=0.01, max_p99_ms=50)
    assert ">100%<" in promoted
    assert ">promoted<" in promoted
    assert promoted.count('stroke="#c5221f"') == 3  # the two limits and the legend
    rolled_back = timeline_chart(steps, outcome="rolled back")
    assert ">rolled back<" in rolled_back
    assert ">100%<" not in rolled_back
    paused = timeline_chart(steps, outcome="paused")
    assert ">end<" not in paused


def test_sbom_components_counts_nested_ones(tmp_path: Path) -> None:
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"components": [{"components": [{}, {}]}, {}]}))
    assert sbom_components(sbom) == 4
    sbom.write_text("[]")
    assert sbom_components(sbom) is None
    assert sbom_components(None) is None


def test_a_first_deployment_explains_why_there_is_no_analysis(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", ["deploy-staging"])
    path = bundle.root / "deploy-staging" / "result.json"
    data = json.loads(path.read_text())
    data["details"] |= {"measurements": [], "outcome": "deployed"}
    path.write_text(json.dumps(data))
    page = render_html(bundle)
    assert "nothing was live here before" in page
    assert 'aria-label="rollout timeline"' not in page


def test_report_html_command_writes_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_bundle(tmp_path / "run")
    copy = tmp_path / "site" / "index.html"
    args = ["report", "--html", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "no")]
    assert main(args) == 0
    assert capsys.readouterr().out == f"report: {tmp_path / 'run' / REPORT_FILE}\n"
    assert main([*args, "-o", str(copy)]) == 0
    assert copy.read_text() == (tmp_path / "run" / REPORT_FILE).read_text()
    assert not (tmp_path / "run" / "report.md").exists()


def test_report_html_lists_the_configs_stages(
    tmp_path: Path,
    project: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_stages(monkeypatch, lint=ok(), custom=ok())
    write_bundle(tmp_path / "run", ["lint"])
    assert main(["report", "--html", "--out", str(tmp_path / "run"), "--config", str(project)]) == 0
    page = (tmp_path / "run" / REPORT_FILE).read_text()
    assert list(rows(page)) == [*STAGES[:7], "custom"]
    assert rows(page)["custom"] == "not run"


def test_mlcd_run_writes_the_report(
    project: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_stages(monkeypatch, lint=ok(), test=ok("5 passed"))
    assert run(project) == 0
    page = project.parent / "out" / REPORT_FILE
    assert f"report: {page}" in capsys.readouterr().out
    table = rows(page.read_text())
    assert (table["lint"], table["test"], table["release"]) == ("passed", "passed", "not run")
    assert "Passed so far: every stage that ran said yes" in page.read_text()
    not_run = "not run: train, evaluate, build, scan, release"
    assert f"2 of 2 stages passed; {not_run}" in page.read_text()


def test_write_html_makes_the_folder(tmp_path: Path) -> None:
    path = write_html(tmp_path / "new" / "out")
    assert path.is_file()
    assert path.name == REPORT_FILE


def test_a_release_without_a_deployment_is_ready_to_deploy(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "run", STAGES[:7])
    judged = verdict(collect(bundle, planned=STAGES[:7]))
    assert (judged.status, judged.headline) == ("pass", "Passed: release 0.1.1 is ready to deploy")
    assert judged.detail == "7 of 7 stages passed"
