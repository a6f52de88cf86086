"""One merged SARIF 2.1.0 log of every finding, within GitHub code scanning's upload limits.

GitHub rejects a SARIF upload over 10 MB gzipped, with more than 25,000 results in a run,
more than 20 runs, or more than 1,000 locations in a result. Over a limit, the most severe
findings (gate failures first) are kept and the rest dropped; the log then says so in the
run's `invocations[].toolExecutionNotifications` and in `properties`, and so does the
summary.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcd import sarif
from mlcd.security.policy import Judged, Verdict

MAX_RESULTS_PER_RUN = 25_000
MAX_GZIP_BYTES = 10 * 1024 * 1024
MAX_RUNS = 20
LEVEL = {
    "CRITICAL": "error",
    "HIGH": "error",
    "MEDIUM": "warning",
    "LOW": "note",
    "UNKNOWN": "note",
}
SECURITY_SEVERITY = {"CRITICAL": 9.5, "HIGH": 8.0, "MEDIUM": 5.5, "LOW": 3.0, "UNKNOWN": 0.0}


@dataclass(frozen=True)
class ToolInfo:
    name: str
    version: str
    uri: str


@dataclass
class SarifOutcome:
    log: dict[str, Any]
    results: int
    dropped: int
    gzip_bytes: int
    note: str | None


def _priority(judged: Judged) -> tuple[int, int, str]:
    return (0 if judged.decision == "fail" else 1, -judged.finding.rank, judged.finding.id)


def _fingerprint(judged: Judged) -> str:
    f = judged.finding
    key = "|".join((f.source, f.target, f.id, f.package, f.installed, f.path, str(f.line)))
    return hashlib.sha256(key.encode()).hexdigest()


def _artifact(uri: str) -> dict[str, str]:
    """A path in the repository is relative to %SRCROOT%; one outside it is a file: URI."""
    if uri.startswith("/"):
        return {"uri": Path(uri).as_uri()}
    return {"uri": uri, "uriBaseId": "%SRCROOT%"}


def _result(judged: Judged, rule_index: int, fallback_uri: Mapping[str, str]) -> dict[str, Any]:
    f = judged.finding
    in_repo = bool(f.path) and not f.target.startswith(("image", "clair"))
    uri = f.path if in_repo else fallback_uri.get(f.target) or fallback_uri.get("", "")
    region: dict[str, Any] = {"startLine": max(1, f.line if in_repo else 1)}
    text = f.one_line()
    if judged.decision == "unfixed":
        text += " — not gated: no fixed version yet (scan.ignore-unfixed)"
    elif judged.decision == "below":
        text += " — below scan.severity"
    suppressions = None
    if judged.decision == "suppressed" and judged.entry is not None:
        entry = judged.entry
        suppressions = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": f"{entry.reason} (expires {entry.expires.isoformat()}"
                + (f", owner {entry.owner}" if entry.owner else "")
                + f"; {entry.where})",
            }
        ]
    return sarif.result(
        f.id,
        rule_index=rule_index,
        level=LEVEL.get(f.severity, "note"),
        text=text,
        locations=[sarif.location(_artifact(uri or "mlcd.yaml"), region)],
        fingerprints={"mlcdFinding/v1": _fingerprint(judged)},
        properties={
            "severity": f.severity,
            "kind": f.kind,
            "target": f.target,
            "gate": judged.decision,
            **({"package": f.package} if f.package else {}),
            **({"installedVersion": f.installed} if f.installed else {}),
            **({"fixedVersion": f.fixed} if f.fixed else {}),
        },
        suppressions=suppressions,
    )


def _run(
    tool: ToolInfo,
    judged: list[Judged],
    dropped: int,
    fallback_uri: Mapping[str, str],
    note: str | None,
) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for j in judged:
        f = j.finding
        rule = rules.get(f.id)
        score = SECURITY_SEVERITY.get(f.severity, 0.0)
        if rule is None:
            rules[f.id] = sarif.rule(
                f.id,
                name=f.id,
                short=(f.title or f.id)[:1000],
                level=LEVEL.get(f.severity, "note"),
                properties={"security-severity": f"{score:.1f}", "tags": ["security", f.kind]},
                help_uri=f.url,
            )
        elif float(rule["properties"]["security-severity"]) < score:
            rule["properties"]["security-severity"] = f"{score:.1f}"
            rule["defaultConfiguration"]["level"] = LEVEL.get(f.severity, "note")
        results.append(_result(j, list(rules).index(f.id), fallback_uri))
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if dropped and note:
        invocation["toolExecutionNotifications"] = [{"level": "warning", "message": {"text": note}}]
    return sarif.run(
        tool=tool.name,
        version=tool.version,
        information_uri=tool.uri,
        rules=list(rules.values()),
        results=results,
        columnKind="utf16CodeUnits",
        properties={"mlcd/dropped": dropped},
        invocations=[invocation],
    )


def build_sarif(
    verdict: Verdict,
    tools: Mapping[str, ToolInfo],
    *,
    root_uri: str,
    fallback_uri: Mapping[str, str],
    max_results: int = MAX_RESULTS_PER_RUN,
    max_gzip_bytes: int = MAX_GZIP_BYTES,
) -> SarifOutcome:
    """The merged log: one run per source tool (trivy, the model scanner, clair)."""
    by_source: dict[str, list[Judged]] = {name: [] for name in tools}
    for judged in verdict.judged:
        by_source.setdefault(judged.finding.source, []).append(judged)
    for items in by_source.values():
        items.sort(key=_priority)
    total = sum(len(v) for v in by_source.values())
    limits = {source: min(len(items), max_results) for source, items in by_source.items()}

    def render(note: str | None) -> dict[str, Any]:
        runs = []
        for source, items in list(by_source.items())[:MAX_RUNS]:
            tool = tools.get(source) or ToolInfo(source, "unknown", "https://github.com/")
            kept = items[: limits[source]]
            runs.append(_run(tool, kept, len(items) - len(kept), fallback_uri, note))
        return sarif.log(runs, root_uri=root_uri)

    def size(log: dict[str, Any]) -> int:
        return len(gzip.compress(json.dumps(log, separators=(",", ":")).encode(), 6))

    reasons = []
    if any(len(by_source[s]) > max_results for s in by_source):
        reasons.append(f"more than {max_results:,} results in a run")
    log = render(None)
    gz = size(log)
    if gz > max_gzip_bytes:
        reasons.append(f"over {max_gzip_bytes / 1024 / 1024:g} MB gzipped")
        while gz > max_gzip_bytes and any(limits.values()):
            limits = {source: int(limit * 0.8) for source, limit in limits.items()}
            log = render(None)
            gz = size(log)
    kept = sum(limits.values())
    dropped = total - kept
    note = None
    if dropped:
        note = (
            f"GitHub's SARIF limits ({' and '.join(reasons)}): kept the {kept:,} most severe "
            f"of {total:,} results (gate failures first), dropped {dropped:,}; "
            "every finding is in scan/findings.json"
        )
        log = render(note)
        gz = size(log)
    return SarifOutcome(log=log, results=kept, dropped=dropped, gzip_bytes=gz, note=note)
