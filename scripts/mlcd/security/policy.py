"""The one policy every finding goes through: severity, unfixed, suppressions.

- a finding at or above `scan.severity` fails the gate;
- with `scan.ignore-unfixed`, a vulnerability that has no fixed version does not;
- a finding matched by a live ignore entry does not (and is listed as suppressed);
- an expired entry suppresses nothing and is listed as expired;
- model-file findings are `blocking`: they fail whatever `scan.severity` says, because a
  model file that imports an unknown callable cannot be loaded safely at all.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from mlcd.security.findings import Finding, severity_rank
from mlcd.security.ignorefile import IgnoreEntry

Decision = Literal["fail", "below", "unfixed", "suppressed"]


@dataclass(frozen=True)
class Policy:
    severity: str = "HIGH"
    ignore_unfixed: bool = True


@dataclass(frozen=True)
class Judged:
    finding: Finding
    decision: Decision
    entry: IgnoreEntry | None = None


@dataclass
class Verdict:
    judged: list[Judged]
    expired: list[IgnoreEntry] = field(default_factory=list)
    unused: list[IgnoreEntry] = field(default_factory=list)
    expired_hits: dict[int, int] = field(default_factory=dict)

    @property
    def failing(self) -> list[Judged]:
        return [j for j in self.judged if j.decision == "fail"]

    @property
    def suppressed(self) -> list[Judged]:
        return [j for j in self.judged if j.decision == "suppressed"]

    @property
    def passed(self) -> bool:
        return not self.failing


def matches(entry: IgnoreEntry, finding: Finding) -> bool:
    if entry.id.casefold() != finding.id.casefold():
        return False
    if entry.package is None:
        return True
    pattern = entry.package
    return any(
        fnmatch.fnmatchcase(candidate, pattern)
        for candidate in (finding.package, finding.path)
        if candidate
    )


def judge(
    findings: Iterable[Finding],
    policy: Policy,
    entries: list[IgnoreEntry],
    *,
    today: dt.date,
) -> Verdict:
    threshold = severity_rank(policy.severity)
    live = [e for e in entries if not e.expired(today)]
    expired = [e for e in entries if e.expired(today)]
    used: set[int] = set()
    expired_hits: dict[int, int] = {}
    judged: list[Judged] = []
    for finding in findings:
        entry = next((e for e in live if matches(e, finding)), None)
        for index, old in enumerate(expired):
            if matches(old, finding):
                expired_hits[index] = expired_hits.get(index, 0) + 1
        if entry is not None:
            used.add(id(entry))
            judged.append(Judged(finding, "suppressed", entry))
        elif finding.kind == "vulnerability" and policy.ignore_unfixed and not finding.fixed:
            judged.append(Judged(finding, "unfixed"))
        elif finding.blocking or finding.rank >= threshold:
            judged.append(Judged(finding, "fail"))
        else:
            judged.append(Judged(finding, "below"))
    judged.sort(key=lambda j: (j.decision != "fail", -j.finding.rank, j.finding.id))
    unused = [e for e in live if id(e) not in used]
    return Verdict(judged=judged, expired=expired, unused=unused, expired_hits=expired_hits)
