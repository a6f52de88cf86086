"""The evidence bundle (docs/foundation.md): `.mlcd/<stage>/result.json` and `summary.md`.

Stages pass nothing to each other but this folder. A stage returns a `StageOutcome`; the
runner (`run_stage`) times it, adds the inputs (config and git digests), writes
`result.json` and `summary.md`, and turns a failing outcome into the matching exit code.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mlcd.errors import EnvironmentMissing, GateFailed, MlcdError, UserInputError

RESULT_SCHEMA_VERSION = 1
Status = Literal["pass", "fail", "error", "skipped"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "error", "skipped")


@dataclass
class StageOutcome:
    """What a stage reports; the runner adds timing and inputs."""

    status: Status
    summary: str
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""


@dataclass
class StageResult:
    """The content of `result.json`."""

    stage: str
    status: Status
    started: str
    duration_s: float
    summary: str
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    schema_version: int = RESULT_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: Path) -> StageResult:
        version = data.get("schema_version", RESULT_SCHEMA_VERSION)
        if version != RESULT_SCHEMA_VERSION:
            raise UserInputError(
                f"{source}: result schema version {version} is not one this mlcd reads "
                f"({RESULT_SCHEMA_VERSION})",
                hint="re-run the stage with this version of mlcd",
            )
        try:
            status = data["status"]
            if status not in STATUSES:
                raise UserInputError(f"{source}: unknown status {status!r}")
            return cls(
                stage=str(data["stage"]),
                status=status,
                started=str(data["started"]),
                duration_s=float(data["duration_s"]),
                summary=str(data["summary"]),
                reasons=[str(r) for r in data.get("reasons", [])],
                metrics=dict(data.get("metrics", {})),
                artifacts={str(k): str(v) for k, v in data.get("artifacts", {}).items()},
                inputs={str(k): str(v) for k, v in data.get("inputs", {}).items()},
                details=dict(data.get("details", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"{source}: malformed result.json ({exc})") from exc


def utc_now() -> str:
    """ISO 8601 in UTC with milliseconds, so that stages started in one second still sort."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# errno values that mean "this place cannot be written" (as opposed to a bug or a missing
# input): read-only mounts, permissions, a full disk or quota, an I/O error
_WRITE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
)
WRITE_HINT = (
    "make the folder writable (permissions, a read-only mount, free space), or point "
    "--out (MLCD_OUT) at one that is"
)
STATE_HINT = (
    "make the folder writable (permissions, a read-only mount, free space), or point "
    "MLCD_STATE_DIR (default: .mlcd-state next to mlcd.yaml) at one that is"
)


def is_write_failure(exc: BaseException) -> bool:
    """An OSError that says a file or folder cannot be written."""
    return isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS


def write_failure(exc: OSError, where: Path | str | None = None) -> EnvironmentMissing:
    """The exit-3 error for a failed write: the path and the reason, never a traceback."""
    path = exc.filename if exc.filename is not None else where
    reason = exc.strerror or str(exc)
    return EnvironmentMissing(f"cannot write {path}: {reason}", hint=WRITE_HINT)


def require_writable(folder: Path, what: str = "the run folder", *, hint: str = WRITE_HINT) -> None:
    """Check that `folder` (made when missing) takes a new file, before a command acts:
    a read-only run folder is found before anything is trained, pushed or deployed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mlcd-write-check.")
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EnvironmentMissing(
            f"cannot write {what} {folder}: {reason}; nothing was done", hint=hint
        ) from exc


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        # mkstemp makes the file 0600; evidence is read by others (containers, CI artifacts)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Bundle:
    """The run folder (`--out`, default `.mlcd`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        """A path inside the bundle as it is recorded in `artifacts`."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def write(self, result: StageResult, markdown: str) -> None:
        """Write result.json and summary.md; a failed write is exit 3 naming the path."""
        try:
            folder = self.stage_dir(result.stage)
            write_json_atomic(folder / "result.json", result.to_json())
            (folder / "summary.md").write_text(markdown or _default_markdown(result), "utf-8")
        except OSError as exc:
            raise write_failure(exc, self.root / result.stage) from exc

    def read(self, stage: str) -> StageResult | None:
        path = self.root / stage / "result.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: unreadable result ({exc})") from exc
        if not isinstance(data, dict):
            raise UserInputError(f"{path}: result.json is not an object")
        return StageResult.from_json(data, path)

    def require(self, stage: str, *, by: str) -> StageResult:
        """The result of an earlier stage that `by` needs, or a clear exit-2 error."""
        result = self.read(stage)
        if result is None:
            raise UserInputError(
                f"`mlcd {by}` needs the output of `mlcd {stage}` in {self.root}, and there is none",
                hint=f"run `mlcd {stage}` first (or `mlcd run`), with the same --out",
            )
        return result

    def summary_markdown(self, stage: str) -> str:
        path = self.root / stage / "summary.md"
        return path.read_text("utf-8") if path.is_file() else ""

    def stages(self) -> list[StageResult]:
        """Every stage result in the folder, in the order they started."""
        found = []
        if self.root.is_dir():
            for child in sorted(self.root.iterdir()):
                if (child / "result.json").is_file():
                    result = self.read(child.name)
                    if result is not None:
                        found.append(result)
        return sorted(found, key=lambda r: (r.started, r.stage))


# Keyed by STATUSES, in order (a literal {"pass": …} reads as a password to bandit B105).
_ICON: dict[str, str] = dict(zip(STATUSES, ("✅", "❌", "⚠️", "⏭️"), strict=True))


def status_icon(status: str) -> str:
    return _ICON.get(status, "•")


def _default_markdown(result: StageResult) -> str:
    lines = [f"### {status_icon(result.status)} {result.stage}: {result.summary}", ""]
    lines.extend(f"- {reason}" for reason in result.reasons)
    return "\n".join(lines) + "\n"


def run_stage(
    bundle: Bundle,
    stage: str,
    body: Callable[[], StageOutcome],
    *,
    inputs: Mapping[str, str],
    writable: Sequence[tuple[Path, str, str]] = (),
) -> StageResult:
    """Run a stage body and record its result.

    Before the body runs, the stage's folder in the bundle (and `writable`: other folders
    the stage writes, such as an environment's state, each with what it is and the hint to
    give when it is read-only) must take a file, or nothing runs
    (exit 3). A failed gate is returned (status `fail`); an error (exit 2 or 3) is recorded
    as status `error` and raised again for the CLI's handler; a write that fails while the
    body runs is such an error (exit 3, with the path).
    """
    require_writable(bundle.root / stage, "the run folder")
    for folder, what, hint in writable:
        require_writable(folder, what, hint=hint)
    started = utc_now()
    clock = time.monotonic()
    try:
        try:
            outcome = body()
        except OSError as exc:
            if not is_write_failure(exc):
                raise
            raise write_failure(exc) from exc
    except MlcdError as exc:
        result = StageResult(
            stage=stage,
            status="error" if exc.exit_code != GateFailed.exit_code else "fail",
            started=started,
            duration_s=round(time.monotonic() - clock, 3),
            summary=exc.message,
            reasons=[*exc.problems, *([f"hint: {exc.hint}"] if exc.hint else [])],
            inputs=dict(inputs),
            details={"exit_code": exc.exit_code},
        )
        try:
            bundle.write(result, "")
        except EnvironmentMissing as unwritten:
            # the error is still the one to report; say that it is not in the bundle
            exc.problems.append(f"(not recorded in the run folder: {unwritten.message})")
        raise
    result = StageResult(
        stage=stage,
        status=outcome.status,
        started=started,
        duration_s=round(time.monotonic() - clock, 3),
        summary=outcome.summary,
        reasons=outcome.reasons,
        metrics=outcome.metrics,
        artifacts=outcome.artifacts,
        inputs=dict(inputs),
        details=outcome.details,
    )
    bundle.write(result, outcome.markdown)
    return result
