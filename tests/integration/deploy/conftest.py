"""Fixtures of the deploy integration tests: images that misbehave in known ways, and projects.

Images are built once per session FROM local/python:3.11-bookworm with `--network none` and
pushed to the local registry (127.0.0.1:5000), so releases name them by digest as
`mlcd release` does. Each test gets its own project (unique name → unique container names),
state folder, model registry and free router ports, and leaves no container or nginx behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcd import releases
from mlcd.ports import free_port
from mlcd.registry import IMAGE_DIGEST, LocalRegistry
from mlcd.tools.nginx import Nginx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
BASE_IMAGE = "local/python:3.11-bookworm"
REGISTRY = "127.0.0.1:5000"
REPO = f"{REGISTRY}/mlcd-test-deploy-standin"

# variant → environment of the stand-in server
VARIANTS: dict[str, dict[str, str]] = {
    "good": {"STANDIN_FAIL_RATE": "0.005"},
    "fail5": {"STANDIN_FAIL_RATE": "0.05", "STANDIN_SEED": "11"},
    "flip": {"STANDIN_FAIL_RATE": "0", "STANDIN_FLIP_RATE": "0.3"},
    "clean": {"STANDIN_FAIL_RATE": "0"},
}


def _docker(*args: str, input_text: str | None = None) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input_text,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {done.stderr.strip()[-800:]}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def standin_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """variant → `repo@sha256:…` of a pushed stand-in image."""
    _docker("image", "inspect", BASE_IMAGE)  # fails clearly if setup has not run
    built: dict[str, str] = {}
    for variant, env in VARIANTS.items():
        context = tmp_path_factory.mktemp(f"standin-{variant}")
        shutil.copy(HERE / "standin_server.py", context / "server.py")
        env_lines = "".join(f"ENV {k}={v}\n" for k, v in sorted(env.items()))
        (context / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\nCOPY server.py /srv/server.py\n{env_lines}"
            'USER 65534\nEXPOSE 8080\nCMD ["python3", "/srv/server.py"]\n'
        )
        tag = f"{REPO}:{variant}"
        _docker("build", "--network", "none", "--quiet", "-t", tag, str(context))
        _docker("push", "--quiet", tag)
        digests = json.loads(_docker("image", "inspect", "--format", "{{json .RepoDigests}}", tag))
        built[variant] = next(d for d in digests if d.startswith(REPO + "@"))
    return built


@dataclass
class Spawned:
    """A background mlcd process and the files its output goes to."""

    proc: subprocess.Popen[str]
    out_file: Path
    err_file: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        self.proc.kill()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def communicate(self, timeout: float) -> tuple[str, str]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"mlcd did not finish within {timeout}s; its log:\n"
                + self.err_file.read_text()[-3000:]
            ) from None
        return self.out_file.read_text(), self.err_file.read_text()


@dataclass
class Project:
    """A throwaway model project with a registry, a run folder and its own ports."""

    root: Path
    name: str
    envs: dict[str, Any]
    ports: dict[str, int] = field(default_factory=dict)
    logs: int = 0

    @property
    def config(self) -> Path:
        return self.root / "mlcd.yaml"

    @property
    def out(self) -> Path:
        return self.root / ".mlcd"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def registry(self) -> LocalRegistry:
        return LocalRegistry(self.root / "registry")

    def write_config(self) -> None:
        data = {
            "version": 1,
            "project": self.name,
            "model": {
                "task": "classification",
                "entrypoint": "train.py:build_model",
                "data": "data.csv",
                "target": "diagnosis",
            },
            "registry": {"path": "registry"},
            "environments": self.envs,
        }
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))

    def release(
        self,
        image: str,
        *,
        scan: str = "pass",
        passed: bool = True,
        verdict_extra: dict[str, Any] | None = None,
    ) -> str:
        """Record a release of this image as `mlcd release` does; return its version.

        A model version is registered with the verdict; the release (0.1.0, 0.1.1, …) is
        appended to its `releases` with an evidence bundle holding the verdict and the scan.
        """
        registry = self.registry
        model = self.root / "model.bin"
        model.write_bytes(uuid.uuid4().bytes)
        verdict = {"passed": passed, "checks": [], **(verdict_extra or {})}
        record = registry.register(
            model_file=model,
            metadata={"fingerprint": uuid.uuid4().hex},
            metrics={},
            verdict=verdict,
        )
        version = releases.next_version(registry)
        evidence = self.root / "releases" / version / "evidence.tar.gz"
        evidence.parent.mkdir(parents=True)
        with tarfile.open(evidence, "w:gz") as archive:
            for name, data in (
                ("evaluate/verdict.json", verdict),
                ("scan/result.json", {"stage": "scan", "status": scan}),
            ):
                raw = json.dumps(data).encode()
                info = tarfile.TarInfo(f"evidence/{name}")
                info.size = len(raw)
                archive.addfile(info, io.BytesIO(raw))
        registry.append(
            record.version,
            releases.RELEASES,
            {
                "version": version,
                "model_version": record.version,
                "image": image,
                "image_id": "sha256:" + uuid.uuid4().hex * 2,
                "evidence_digest": "sha256:" + hashlib.sha256(evidence.read_bytes()).hexdigest(),
                "evidence": str(evidence),
                "released": "2026-01-01T00:00:00Z",
            },
        )
        registry.attach(record.version, IMAGE_DIGEST, image)
        return version

    def env(self) -> dict[str, str]:
        out = dict(os.environ)
        out["MLCD_STATE_DIR"] = str(self.state)
        out.pop("MLCD_REGISTRY_PATH", None)
        for env, port in self.ports.items():
            out[f"MLCD_{env.upper()}_PORT"] = str(port)
        return out

    def argv(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlcd",
            *args,
            "--config",
            str(self.config),
            "--out",
            str(self.out),
        ]

    def mlcd(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )

    def spawn(self, *args: str) -> Spawned:
        """Start mlcd in the background; its output goes to files (a pipe could fill up)."""
        self.logs += 1
        out = self.root / f"spawn-{self.logs}.out"
        err = self.root / f"spawn-{self.logs}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                self.argv(*args), stdout=stdout, stderr=stderr, text=True, env=self.env()
            )
        return Spawned(proc, out, err)

    def state_json(self, env: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / env / "state.json").read_text())
        return data

    def result(self, stage: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / stage / "result.json").read_text())
        return data

    def url(self, env: str) -> str:
        return f"http://127.0.0.1:{self.ports[env]}"

    def containers(self) -> list[str]:
        out = _docker(
            "ps", "--all", "--format", "{{.Names}}", "--filter", f"label=mlcd.project={self.name}"
        )
        return [line for line in out.splitlines() if line]


def holdout_csv(path: Path, rows: int = 120) -> None:
    lines = (ROOT / "model" / "data" / "train.csv").read_text().splitlines()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines[: rows + 1]) + "\n")


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[Any]:
    made: list[Project] = []

    def make(envs: dict[str, Any]) -> Project:
        name = f"dt-{uuid.uuid4().hex[:8]}"
        project = Project(root=tmp_path / name, name=name, envs=envs)
        project.root.mkdir()
        project.ports = {env: free_port() for env in envs}
        project.write_config()
        holdout_csv(project.out / "train" / "holdout.csv")
        made.append(project)
        return project

    yield make
    for project in made:
        for env in project.envs:
            Nginx(project.state / env / "nginx").stop()
        for name in project.containers():
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def holdout_rows_for_tests(rows: int = 120) -> list[dict[str, float]]:
    lines = (ROOT / "model" / "data" / "train.csv").read_text().splitlines()
    header = lines[0].split(",")
    out = []
    for line in lines[1 : rows + 1]:
        values = dict(zip(header, line.split(","), strict=True))
        values.pop("diagnosis", None)
        out.append({k: float(v) for k, v in values.items()})
    return out
