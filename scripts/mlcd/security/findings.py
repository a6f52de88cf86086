"""One shape for every finding, whichever scanner reported it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

SEVERITIES: tuple[str, ...] = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
Kind = Literal["vulnerability", "secret", "misconfiguration", "model"]


def severity_rank(severity: str) -> int:
    """UNKNOWN 0 … CRITICAL 4; anything unrecognised counts as UNKNOWN."""
    try:
        return SEVERITIES.index(severity.upper())
    except ValueError:
        return 0


def normalise_severity(value: object) -> str:
    text = str(value or "").strip().upper()
    return text if text in SEVERITIES else "UNKNOWN"


@dataclass(frozen=True)
class Finding:
    """A finding from Trivy, Clair or the model scanner.

    `package` is what the finding is about: the package (vulnerabilities), the callable
    or type (model files), or the file (secrets, misconfigurations). `path` and `line`
    place it in the repository when they can. `match` is already redacted.
    """

    kind: Kind
    id: str
    severity: str
    title: str
    target: str
    source: str
    package: str = ""
    installed: str = ""
    fixed: str = ""
    path: str = ""
    line: int = 0
    match: str = ""
    url: str = ""
    blocking: bool = False

    @property
    def rank(self) -> int:
        return severity_rank(self.severity)

    @property
    def where(self) -> str:
        if self.path and self.line:
            return f"{self.path}:{self.line}"
        return self.path or self.package

    def one_line(self) -> str:
        """The line a person reads: severity, id, what, versions, where."""
        if self.kind == "vulnerability":
            fix = f" → fixed in {self.fixed}" if self.fixed else " (no fix yet)"
            what = f"{self.package} {self.installed}{fix}"
        elif self.kind == "secret":
            what = f"{self.where}: {self.title}" + (f" ({self.match})" if self.match else "")
        elif self.kind == "misconfiguration":
            what = f"{self.where}: {self.title}"
        else:
            what = self.title
        return f"{self.severity} {self.id} {what} [{self.target}]"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
