"""The scanners `mlcd scan` runs, behind one interface: `scan(target) -> Part`.

Each implementation wraps one tool (Trivy's image, config and secret scans, the model-file
scanner, a Clair report) and returns a `Part`: the target's findings and the time they took.
The stage chooses the targets and judges every part's findings under one policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mlcd.security import clair, modelscan
from mlcd.security.findings import Finding
from mlcd.tools import trivy

Progress = Callable[[str], None]
T_contra = TypeVar("T_contra", contravariant=True)
R = TypeVar("R")


@dataclass
class Part:
    """One target of the scan: scanned (with its findings) or skipped (with the reason)."""

    name: str
    label: str
    scanned: bool
    reason: str = ""
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    # what an image scan learns besides its findings
    image_os: str = ""
    packages: int = 0
    sbom: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.label,
            "scanned": self.scanned,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
            "findings": len(self.findings),
        }


class Scanner(Protocol[T_contra]):
    """One kind of scan: its target in, a scanned `Part` out."""

    def scan(self, target: T_contra) -> Part: ...


def _timed(progress: Progress, line: str, run: Callable[[], R]) -> tuple[R, float]:
    progress(line)
    clock = time.monotonic()
    found = run()
    return found, time.monotonic() - clock


@dataclass(frozen=True)
class ImageScanner:
    """Trivy on an image of the local engine: vulnerabilities (with a database), secrets,
    misconfigurations, and the image's SBOM. `reason`: why vulnerabilities were not scanned."""

    tool: trivy.Trivy
    db: trivy.TrivyDb | None
    progress: Progress
    reason: str = ""

    def scan(self, target: str) -> Part:
        label = f"image {target}"
        result, seconds = _timed(
            self.progress,
            f"trivy image {target}",
            lambda: trivy.scan_image(self.tool, target, self.db, label=label),
        )
        return Part(
            "image",
            label,
            scanned=True,
            reason=self.reason,
            seconds=seconds,
            findings=result.findings,
            image_os=result.os,
            packages=result.packages,
            sbom=result.sbom,
        )


@dataclass(frozen=True)
class DockerfileScanner:
    """Trivy's misconfiguration checks on a Dockerfile; `target`: (path, how it is shown)."""

    tool: trivy.Trivy
    progress: Progress

    def scan(self, target: tuple[Path, str]) -> Part:
        path, shown = target
        label = shown if shown.endswith("Dockerfile") else f"Dockerfile {shown}"
        found, seconds = _timed(
            self.progress,
            f"trivy config {shown}",
            lambda: trivy.scan_config(self.tool, path, shown=shown, label=label),
        )
        return Part("dockerfile", label, scanned=True, seconds=seconds, findings=found)


@dataclass(frozen=True)
class SecretScanner:
    """Trivy's secret scan of a folder (the repository), skipping `skip_dirs`."""

    tool: trivy.Trivy
    progress: Progress
    skip_dirs: Sequence[Path] = ()

    def scan(self, target: Path) -> Part:
        found, seconds = _timed(
            self.progress,
            "trivy secrets in the repository",
            lambda: trivy.scan_secrets(
                self.tool, target, skip_dirs=list(self.skip_dirs), label="repository"
            ),
        )
        return Part(
            "repository", "repository (secrets)", scanned=True, seconds=seconds, findings=found
        )


@dataclass(frozen=True)
class ModelScanner:
    """mlcd's model-file scanner; `trusted(path)`: the skops types the project trusts."""

    progress: Progress
    trusted: Callable[[Path], Iterable[str]]

    def scan(self, target: tuple[Path, str]) -> Part:
        path, shown = target
        found, seconds = _timed(
            self.progress,
            f"model file {shown}",
            lambda: modelscan.scan_model_file(path, shown=shown, trusted=self.trusted(path)),
        )
        return Part("model", f"model {shown}", scanned=True, seconds=seconds, findings=found)


@dataclass(frozen=True)
class ClairReportScanner:
    """A Clair JSON report, read (not run): its vulnerabilities are judged like Trivy's."""

    def scan(self, target: Path) -> Part:
        findings = clair.parse_clair(target)
        return Part("clair", clair_label(target), scanned=True, findings=findings)


def clair_label(path: Path) -> str:
    return f"clair report {path.name}"
