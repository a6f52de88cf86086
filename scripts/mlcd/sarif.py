"""Building SARIF 2.1.0 logs (lint and scan both write them for GitHub code scanning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
LEVELS = ("error", "warning", "note", "none")


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
        rule: dict[str, Any] = {
            "id": rule_id,
            "shortDescription": {"text": short or rule_id},
            "defaultConfiguration": {"level": level},
        }
        if help_uri:
            rule["helpUri"] = help_uri
        self.rules[rule_id] = rule


def _uri(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def render(runs: list[SarifRun], *, root: Path) -> dict[str, Any]:
    """A SARIF log with one run per tool; locations relative to `root` (%SRCROOT%)."""
    out_runs = []
    for run in runs:
        rule_ids = list(run.rules)
        results = []
        for res in run.results:
            item: dict[str, Any] = {
                "ruleId": res.rule_id,
                "level": res.level,
                "message": {"text": res.message or res.rule_id},
            }
            if res.rule_id in run.rules:
                item["ruleIndex"] = rule_ids.index(res.rule_id)
            if res.path is not None:
                item["locations"] = [
                    {
                        "physicalLocation": {
                            "artifactLocation": {
                                "uri": _uri(res.path, root),
                                "uriBaseId": "%SRCROOT%",
                            },
                            "region": {
                                "startLine": max(1, res.line),
                                "startColumn": max(1, res.column),
                            },
                        }
                    }
                ]
            if res.properties:
                item["properties"] = res.properties
            results.append(item)
        out_runs.append(
            {
                "tool": {
                    "driver": {
                        "name": run.tool,
                        "version": run.version,
                        "informationUri": run.information_uri,
                        "rules": list(run.rules.values()),
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root.resolve().as_uri() + "/"}},
                "results": results,
            }
        )
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": out_runs}
