"""The evaluation's verdict, typed, and its JSON form (`evaluate/verdict.json`).

`Verdict.to_json()` is the file's format (docs/internals.md); the renderers read that form,
so a verdict read back from disk renders the same documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlcd import metrics as m


@dataclass(frozen=True)
class Check:
    """One line of the verdict."""

    kind: str  # threshold | slice-threshold | champion
    metric: str | None
    value: float | None
    bound: str
    passed: bool
    line: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "value": m.clean(self.value),
            "bound": self.bound,
            "passed": self.passed,
            "line": self.line,
            **self.extra,
        }


@dataclass(frozen=True)
class SliceResult:
    """The metrics of one slice of the held-out rows."""

    feature: str
    label: str
    rows: int
    metrics: dict[str, float]
    gated: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "slice": self.label,
            "rows": self.rows,
            "gated": self.gated,
            "metrics": {k: m.clean(v) for k, v in self.metrics.items()},
        }


@dataclass(frozen=True)
class ComparisonRow:
    """One metric of the candidate against the champion, with the paired interval."""

    metric: str
    candidate: float
    champion: float
    difference: float
    interval: m.Interval
    worse_by: float
    max_regression: float | None
    passed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "candidate": m.clean(self.candidate),
            "champion": m.clean(self.champion),
            "difference": m.clean(self.difference),
            "interval": self.interval.as_json(),
            "worse_by": m.clean(self.worse_by),
            "max_regression": self.max_regression,
            "gated": self.max_regression is not None,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Comparison:
    """The comparison with the champion: compared | none | off | not-comparable."""

    status: str
    reason: str
    champion: str | None = None
    rows: list[ComparisonRow] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "champion": self.champion,
            "rows": [r.as_json() for r in self.rows],
        }


@dataclass(frozen=True)
class Verdict:
    """What the evaluation decided, and every figure the documents show."""

    passed: bool
    summary: str
    checks: list[Check]
    metrics: dict[str, Any]  # the candidate's, JSON-clean (with a confusion matrix)
    intervals: dict[str, m.Interval]
    confidence: float
    bootstrap_samples: int
    holdout_rows: int
    comparison: Comparison
    slices: list[SliceResult]
    model: dict[str, Any]
    # the champion's metrics on the same rows, when it was scored
    champion_metrics: dict[str, float] | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict[str, Any]:
        """The content of verdict.json."""
        data: dict[str, Any] = {
            "passed": self.passed,
            "summary": self.summary,
            "checks": [c.as_json() for c in self.checks],
            "metrics": self.metrics,
            "intervals": {k: v.as_json() for k, v in self.intervals.items()},
            "confidence": self.confidence,
            "bootstrap_samples": self.bootstrap_samples,
            "holdout_rows": self.holdout_rows,
            "comparison": self.comparison.as_json(),
            "slices": [s.as_json() for s in self.slices],
            "model": self.model,
        }
        if self.champion_metrics is not None:
            data["champion_metrics"] = {k: m.clean(v) for k, v in self.champion_metrics.items()}
        return data
