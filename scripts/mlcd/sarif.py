"""The one SARIF 2.1.0 builder: lint and scan both write their logs with it, for GitHub
code scanning.

`rule`, `result`, `location`, `run` and `log` make the objects of the format (each with
the fields SARIF names, in one order); `SarifRun`/`render` is the simple form lint uses.
Scan's merged log (`mlcd.security.sarif_report`) adds fingerprints, suppressions and
GitHub's upload limits on top of the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
LEVELS = ("error", "warning", "note", "none")
SRCROOT = "%SRCROOT%"


def rule(
    rule_id: str,
    *,
    short: str,
    level: str,
    name: str | None = None,
    properties: dict[str, Any] | None = None,
    help_uri: str | None = None,
) -> dict[str, Any]:
    """A `reportingDescriptor` (one rule of a tool's driver)."""
    item: dict[str, Any] = {"id": rule_id}
    if name is not None:
        item["name"] = name
    item["shortDescription"] = {"text": short}
    item["defaultConfiguration"] = {"level": level}
    if properties is not None:
        item["properties"] = properties
    if help_uri:
        item["helpUri"] = help_uri
    return item


def location(artifact: dict[str, str], region: dict[str, Any]) -> dict[str, Any]:
    """A physical location: an `artifactLocation` (a uri, with `uriBaseId` when relative)
    and a region."""
    return {"physicalLocation": {"artifactLocation": artifact, "region": region}}


def result(
    rule_id: str,
    *,
    level: str,
    text: str,
    rule_index: int | None = None,
    locations: list[dict[str, Any]] | None = None,
    fingerprints: dict[str, str] | None = None,
    properties: dict[str, Any] | None = None,
    suppressions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `result`; the optional parts are left out when not given."""
    item: dict[str, Any] = {"ruleId": rule_id}
    if rule_index is not None:
        item["ruleIndex"] = rule_index
    item["level"] = level
    item["message"] = {"text": text}
    optional = {
        "locations": locations,
        "partialFingerprints": fingerprints,
        "properties": properties,
        "suppressions": suppressions,
    }
    item.update({key: value for key, value in optional.items() if value})
    return item


def run(
    *,
    tool: str,
    version: str,
    information_uri: str,
    rules: list[dict[str, Any]],
    results: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """A `run` of one tool; `extra`: further run properties (columnKind, invocations…)."""
    driver = {"name": tool, "version": version, "informationUri": information_uri, "rules": rules}
    return {"tool": {"driver": driver}, "results": results, **extra}


def log(runs: list[dict[str, Any]], *, root_uri: str) -> dict[str, Any]:
    """The SARIF log; every run's %SRCROOT% is `root_uri`."""
    for item in runs:
        item["originalUriBaseIds"] = {SRCROOT: {"uri": root_uri}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": runs}


@dataclass(frozen=True)
class SarifResult:
    rule_id: str
    level: str
    message: str
    path: Path | None
    line: int = 1
    column: int = 1
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class SarifRun:
    tool: str
    version: str
    information_uri: str
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[SarifResult] = field(default_factory=list)

    def add_rule(
        self, rule_id: str, *, short: str, help_uri: str | None = None, level: str = "warning"
    ) -> None:
        if rule_id in self.rules:
            return
        self.rules[rule_id] = rule(rule_id, short=short or rule_id, level=level, help_uri=help_uri)


def _uri(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _result(res: SarifResult, rule_ids: list[str], root: Path) -> dict[str, Any]:
    locations = None
    if res.path is not None:
        artifact = {"uri": _uri(res.path, root), "uriBaseId": SRCROOT}
        region = {"startLine": max(1, res.line), "startColumn": max(1, res.column)}
        locations = [location(artifact, region)]
    return result(
        res.rule_id,
        level=res.level,
        text=res.message or res.rule_id,
        rule_index=rule_ids.index(res.rule_id) if res.rule_id in rule_ids else None,
        locations=locations,
        properties=res.properties,
    )


def render(runs: list[SarifRun], *, root: Path) -> dict[str, Any]:
    """A SARIF log with one run per tool; locations relative to `root` (%SRCROOT%)."""
    out_runs = [
        run(
            tool=item.tool,
            version=item.version,
            information_uri=item.information_uri,
            rules=list(item.rules.values()),
            results=[_result(res, list(item.rules), root) for res in item.results],
        )
        for item in runs
    ]
    return log(out_runs, root_uri=root.resolve().as_uri() + "/")
