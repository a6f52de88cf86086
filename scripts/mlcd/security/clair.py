"""Clair's JSON vulnerability reports, read into the same findings as Trivy's.

Two shapes are read: Clair v4's vulnerability report (`packages`, `vulnerabilities`,
`package_vulnerabilities`, as `clairctl report` and the `/matcher/api/v1/vulnerability_report`
endpoint return it) and the flat list that clair-scanner writes (`vulnerabilities` as a
list of `featurename`, `featureversion`, `vulnerability`, `severity`, `fixedby`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlcd.errors import UserInputError
from mlcd.security.findings import Finding

SOURCE = "clair"
# Clair's normalized severities, onto Trivy's scale.
_SEVERITY = {
    "unknown": "UNKNOWN",
    "negligible": "LOW",
    "low": "LOW",
    "medium": "MEDIUM",
    "moderate": "MEDIUM",
    "high": "HIGH",
    "important": "HIGH",
    "critical": "CRITICAL",
    "defcon1": "CRITICAL",
}


def _severity(*values: object) -> str:
    for value in values:
        mapped = _SEVERITY.get(str(value or "").strip().lower())
        if mapped and mapped != "UNKNOWN":
            return mapped
    return "UNKNOWN"


def parse_clair(path: Path) -> list[Finding]:
    """Findings from one Clair report; a file that is not one is an input error (exit 2)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise UserInputError(f"--clair-report: {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"--clair-report: {path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UserInputError(f"--clair-report: {path} is not a Clair report (not an object)")
    label = f"clair report {path.name}"
    if isinstance(data.get("vulnerabilities"), dict):
        return _v4(data, label)
    if isinstance(data.get("vulnerabilities"), list):
        return _scanner(data["vulnerabilities"], label)
    raise UserInputError(
        f"--clair-report: {path} is not a Clair report: it has no `vulnerabilities`",
        hint="pass Clair v4's vulnerability report JSON or clair-scanner's JSON output",
    )


def _v4(data: dict[str, Any], label: str) -> list[Finding]:
    packages = data.get("packages") if isinstance(data.get("packages"), dict) else {}
    vulns: dict[str, Any] = data["vulnerabilities"]
    links = data.get("package_vulnerabilities")
    pairs: list[tuple[str, str]] = []
    if isinstance(links, dict):
        pairs = [
            (str(pkg_id), str(vuln_id))
            for pkg_id, vuln_ids in links.items()
            for vuln_id in vuln_ids or []
        ]
    else:
        pairs = [("", vid) for vid in vulns]
    findings = []
    for pkg_id, vuln_id in pairs:
        vuln = vulns.get(vuln_id)
        if not isinstance(vuln, dict):
            continue
        package = packages.get(pkg_id) if isinstance(packages, dict) else None
        package = package if isinstance(package, dict) else vuln.get("package") or {}
        findings.append(
            Finding(
                kind="vulnerability",
                id=str(vuln.get("name") or vuln_id),
                severity=_severity(vuln.get("normalized_severity"), vuln.get("severity")),
                title=str(vuln.get("description") or vuln.get("name") or "")[:200],
                target=label,
                source=SOURCE,
                package=str(package.get("name", "")),
                installed=str(package.get("version", "")),
                fixed=str(vuln.get("fixed_in_version") or ""),
                url=str(vuln.get("links") or "").split()[0] if vuln.get("links") else "",
            )
        )
    return findings


def _scanner(items: list[Any], label: str) -> list[Finding]:
    findings = []
    for item in items:
        if not isinstance(item, dict):
            continue
        findings.append(
            Finding(
                kind="vulnerability",
                id=str(item.get("vulnerability") or item.get("name") or ""),
                severity=_severity(item.get("severity")),
                title=str(item.get("description") or "")[:200],
                target=label,
                source=SOURCE,
                package=str(item.get("featurename", "")),
                installed=str(item.get("featureversion", "")),
                fixed=str(item.get("fixedby") or ""),
                url=str(item.get("link") or ""),
            )
        )
    return findings
