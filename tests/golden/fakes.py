"""Canned answers of the programs mlcd runs (git, ruff, bandit, trivy), at the one seam
where mlcd starts a process (`subprocess.run`, used only by `mlcd.tools.base.run`): the
golden files are made in-process, and the stages' own code decides what to do with them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _ruff_findings(project: Path) -> list[dict[str, Any]]:
    return [
        {
            "code": "F401",
            "message": "`os` imported but unused",
            "filename": str(project / "train.py"),
            "location": {"row": 2, "column": 8},
            "url": "https://docs.astral.sh/ruff/rules/unused-import",
        },
        {
            "code": "E711",
            "message": "Comparison to `None` should be `cond is None`",
            "filename": str(project / "train.py"),
            "location": {"row": 9, "column": 12},
            "url": "https://docs.astral.sh/ruff/rules/none-comparison",
        },
    ]


def _bandit_report() -> dict[str, Any]:
    def issue(test_id: str, name: str, text: str, severity: str, line: int) -> dict[str, Any]:
        return {
            "test_id": test_id,
            "test_name": name,
            "issue_text": text,
            "issue_severity": severity,
            "issue_confidence": "HIGH",
            "filename": "train.py",
            "line_number": line,
            "col_offset": 4,
            "more_info": f"https://bandit.readthedocs.io/en/latest/plugins/{test_id.lower()}.html",
        }

    return {
        "results": [
            issue("B101", "assert_used", "Use of assert detected.", "LOW", 11),
            issue("B307", "eval", "Use of possibly insecure function - eval.", "MEDIUM", 12),
        ]
    }


def _vulnerability(vid: str, severity: str, package: str, fixed: str) -> dict[str, Any]:
    return {
        "VulnerabilityID": vid,
        "PkgName": package,
        "InstalledVersion": "1.0.0",
        "FixedVersion": fixed,
        "Severity": severity,
        "Title": f"{package}: a flaw found by the golden fixture",
        "PrimaryURL": f"https://avd.aquasec.com/nvd/{vid.lower()}",
    }


IMAGE_REPORT: dict[str, Any] = {
    "SchemaVersion": 2,
    "Metadata": {"OS": {"Family": "debian", "Name": "12.7"}},
    "Results": [
        {
            "Target": "golden (debian 12.7)",
            "Class": "os-pkgs",
            "Packages": [{"Name": f"pkg{i}", "Version": "1"} for i in range(12)],
            "Vulnerabilities": [
                _vulnerability("CVE-2030-0001", "CRITICAL", "openssl", "3.0.2"),
                _vulnerability("CVE-2030-0002", "HIGH", "libexpat", ""),
                _vulnerability("CVE-2030-0003", "HIGH", "zlib", "1.3.1"),
                _vulnerability("CVE-2030-0004", "MEDIUM", "curl", "8.0.1"),
                _vulnerability("CVE-2030-0005", "LOW", "tar", ""),
            ],
        },
        {
            "Target": "Python",
            "Class": "lang-pkgs",
            "Packages": [{"Name": "numpy", "Version": "2.0.0"}],
            "Secrets": [
                {
                    "RuleID": "aws-access-key-id",
                    "Severity": "CRITICAL",
                    "Title": "AWS Access Key ID",
                    "StartLine": 3,
                    "Match": "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
                }
            ],
        },
    ],
}
CONFIG_REPORT: dict[str, Any] = {
    "Results": [
        {
            "Target": "Dockerfile",
            "Misconfigurations": [
                {
                    "ID": "DS002",
                    "Title": "Image user should not be 'root'",
                    "Severity": "HIGH",
                    "Status": "FAIL",
                    "Message": "Specify at least 1 USER command in Dockerfile",
                    "CauseMetadata": {"StartLine": 1},
                    "PrimaryURL": "https://avd.aquasec.com/misconfig/ds002",
                },
                {"ID": "DS001", "Title": "passes", "Severity": "LOW", "Status": "PASS"},
            ],
        }
    ]
}
SECRETS_REPORT: dict[str, Any] = {
    "Results": [
        {
            "Target": "config/settings.env",
            "Secrets": [
                {
                    "RuleID": "github-pat",
                    "Severity": "CRITICAL",
                    "Title": "GitHub Personal Access Token",
                    "StartLine": 2,
                    "Match": "TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ012345",
                }
            ],
        }
    ]
}


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_model" name="test_fits" file="tests/test_model.py" time="0.1"/>
<testcase classname="tests.test_model" name="test_predicts" file="tests/test_model.py" time="0.2"/>
<testcase classname="tests.test_model.TestData" name="test_columns" file="tests/test_model.py">
<failure message="AssertionError: assert 4 == 5&#10;  + where 4 = len(columns)">trace</failure>
</testcase>
<testcase classname="tests.test_model" name="test_gpu" file="tests/test_model.py">
<skipped message="no GPU"/>
</testcase>
</testsuite></testsuites>
"""


def _coverage(project: Path) -> dict[str, Any]:
    def entry(covered: int, statements: int) -> dict[str, Any]:
        return {"summary": {"covered_lines": covered, "num_statements": statements}}

    # the tests' own file is left out of the figure: 9 of 12 statements of train.py
    return {"files": {"train.py": entry(9, 12), "tests/test_model.py": entry(20, 20)}}


@dataclass
class FakePrograms:
    """`subprocess.run` for git, ruff, bandit and trivy, answering from the data above."""

    project: Path

    def __call__(self, argv: Sequence[str], **_: Any) -> subprocess.CompletedProcess[str]:
        args = [str(a) for a in argv]
        name = Path(args[0]).name
        if name == "git":
            return self._git(args[1:])
        if name == "trivy":
            return self._trivy(args[1:])
        if "-m" in args:
            module, rest = args[args.index("-m") + 1], args[args.index("-m") + 2 :]
            if module == "ruff" and rest[0] == "check":
                return self._done(args, json.dumps(_ruff_findings(self.project)))
            if module == "ruff" and rest[0] == "format":
                unformatted = [{"filename": "train.py", "location": {"row": 4}}]
                return self._done(args, json.dumps(unformatted), code=1)
            if module == "bandit":
                return self._done(args, json.dumps(_bandit_report()), code=1)
            if module == "pytest":
                return self._pytest(args)
        # any other program is missing here (matplotlib then skips fc-list, as it should)
        raise FileNotFoundError(2, "not a program the golden fixture answers", args[0])

    @staticmethod
    def _done(argv: list[str], out: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, code, out, "")

    def _pytest(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        for arg in args:
            if arg.startswith("--junitxml="):
                Path(arg.removeprefix("--junitxml=")).write_text(JUNIT, "utf-8")
            if arg.startswith("--cov-report=json:"):
                report = Path(arg.removeprefix("--cov-report=json:"))
                report.write_text(json.dumps(_coverage(self.project)), "utf-8")
        tail = "FAILED tests/test_model.py::TestData::test_columns - AssertionError\n"
        return self._done(args, tail + "1 failed, 2 passed, 1 skipped in 0.42s\n", code=1)

    def _git(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        if args == ["rev-parse", "--show-toplevel"]:
            return self._done(["git", *args], str(self.project))
        return self._done(["git", *args], "", code=128)

    def _trivy(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = ["trivy", *args]
        if args[0] == "version":
            return self._done(argv, json.dumps({"Version": "0.76.0"}))
        out = Path(args[args.index("--output") + 1])
        if args[0] == "convert":
            components = [{"name": f"pkg{i}", "type": "library"} for i in range(13)]
            data: dict[str, Any] = {"bomFormat": "CycloneDX", "components": components}
        else:
            data = {"image": IMAGE_REPORT, "config": CONFIG_REPORT, "fs": SECRETS_REPORT}[args[0]]
        out.write_text(json.dumps(data), "utf-8")
        return self._done(argv, "")
