"""The serving image end to end: train → evaluate → build (contract test) → release."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.images import Project

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"


def test_build_yields_a_small_non_root_healthy_labelled_image(project: Project) -> None:
    result = project.result("build")
    assert result["status"] == "pass"
    details = result["details"]
    assert isinstance(details, dict)
    assert details["image"] == details["tag"]
    assert details["digest"] == f"{project.name}@{details['image_id']}"
    assert details["size_bytes"] < 400e6
    assert details["user"] == "10001:10001"
    contract = details["contract"]
    assert contract["passed"] is True
    assert contract["agree"] == contract["rows"] == 114
    assert contract["health"] == "healthy"
    labels = details["labels"]
    for key in ("title", "version", "revision", "created", "source"):
        assert f"org.opencontainers.image.{key}" in labels
    for key in ("name", "version", "data-sha256", "metrics-sha256"):
        assert labels[f"io.mlcd.model.{key}"] not in ("", "unknown"), key
    train_meta = json.loads((project.out / "train" / "model.json").read_text())
    assert labels["io.mlcd.model.data-sha256"] == train_meta["data_sha256"]
    inspect = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", details["image_id"]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    assert inspect["Config"]["Healthcheck"]["Test"][0] == "CMD"
    history = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            details["image_id"],
            "-c",
            (
                "id -u; ls /opt/mlcd/bin; python -c 'import pytest' 2>&1 | tail -1; "
                "find / -xdev -name '*.whl' -o -xdev -type d -name tests | head -3"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    lines = history.splitlines()
    assert lines[0] == "10001"
    assert "pip" not in lines[1:4]
    assert "No module named 'pytest'" in history
    assert ".whl" not in history


def test_an_unchanged_rebuild_reuses_the_cache(project: Project) -> None:
    first = project.result("build")["details"]
    project.mlcd("build", "--skip-contract")
    second = project.result("build")["details"]
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    assert second["image_id"] == first["image_id"]
    assert second["cached_steps"] >= second["steps"] - 4  # only FROM lines are not "cache"
    project.mlcd("build")  # restore a contract-tested build for the release test


def _manifest_status(name: str, reference: str) -> int:
    host, repo = name.split("/", 1)
    conn = http.client.HTTPConnection(*host.split(":"), timeout=10)
    conn.request(
        "HEAD",
        f"/v2/{repo}/manifests/{reference}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    status = conn.getresponse().status
    conn.close()
    return status


def test_release_pushes_by_digest_and_is_idempotent(project: Project) -> None:
    first = project.mlcd("release")
    result = project.result("release")
    details = result["details"]
    assert isinstance(details, dict)
    assert details["version"] == "0.1.0"
    image = str(details["image"])
    name, digest = image.split("@")
    assert name == project.name
    assert _manifest_status(name, digest) == 200
    pulled = subprocess.run(
        ["docker", "pull", image], capture_output=True, text=True, timeout=300, check=False
    )
    assert pulled.returncode == 0, pulled.stderr
    assert Path(str(details["evidence"])).is_file()
    registry_file = Path(project.env["MLCD_REGISTRY_PATH"]) / "versions" / "v1" / "attachments.json"
    attachments = json.loads(registry_file.read_text())
    assert attachments["image_digest"] == image
    assert attachments["evidence_digest"] == details["evidence_digest"]
    assert attachments["releases"][0]["version"] == "0.1.0"
    again = project.mlcd("release")
    assert "already released as 0.1.0" in again.stdout
    assert project.result("release")["details"]["version"] == "0.1.0"  # type: ignore[index]
    assert first.returncode == again.returncode == 0


def test_a_version_is_never_overwritten(project: Project, tmp_path: Path) -> None:
    other = tmp_path / "out"
    shutil.copytree(project.out, other, ignore=shutil.ignore_patterns("context"))
    build = json.loads((other / "build" / "result.json").read_text())
    base = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", "local/python:3.11-bookworm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    build["details"]["image_id"] = base  # pretend a different image was built
    (other / "build" / "result.json").write_text(json.dumps(build))
    clone = Project(project.root, project.config, other, project.env, project.name)
    done = clone.mlcd("release", "--version", "0.1.0", check=False)
    assert done.returncode == 2, done.stderr
    assert "never overwritten" in done.stderr
    assert _manifest_status(project.name, "0.1.0") == 200


def test_an_automatic_version_skips_a_tag_another_registry_took(
    project: Project, tmp_path: Path
) -> None:
    project.mlcd("release")  # the project's own release (the same version when it exists)
    released = project.result("release")["details"]
    assert isinstance(released, dict)
    name = str(released["image"]).split("@", 1)[0]
    nxt = str(released["version"])
    other = tmp_path / "out"
    shutil.copytree(project.out, other, ignore=shutil.ignore_patterns("context"))
    build = json.loads((other / "build" / "result.json").read_text())
    base = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", "local/python:3.11-bookworm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # another clone (another model registry) already pushed the next patch's tag
    major, minor, patch = (int(p) for p in nxt.split("."))
    foreign = f"{major}.{minor}.{patch + 1}"
    subprocess.run(["docker", "tag", base, f"{name}:{foreign}"], check=True, timeout=60)
    subprocess.run(
        ["docker", "push", f"{name}:{foreign}"], check=True, capture_output=True, timeout=300
    )
    build["details"]["image_id"] = base  # a different image than the one released
    (other / "build" / "result.json").write_text(json.dumps(build))
    clone = Project(project.root, project.config, other, project.env, project.name)
    done = clone.mlcd("release", check=False)
    assert done.returncode == 0, done.stderr
    details = json.loads((other / "release" / "result.json").read_text())
    assert details["details"]["version"] == f"{major}.{minor}.{patch + 2}"
    assert any(f"skipped {foreign}" in r for r in details["reasons"]), details["reasons"]


def test_build_without_a_docker_engine_is_exit_3(project: Project, tmp_path: Path) -> None:
    env = {**project.env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    clone = Project(project.root, project.config, project.out, env, project.name)
    done = clone.mlcd("build", "--skip-contract", check=False)
    assert done.returncode == 3, done.stderr
    assert "scripts/setup/docker.sh" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("dockerfile", "docker_says"),
    [
        ("FROM local/python:3.11-bookworm\nFOO bar\n", "unknown instruction"),
        ("FROM local/python:3.11-bookworm\nRUN false\n", "returned a non-zero code"),
        ("FROM local/python:3.11-bookworm\nCOPY absent.txt /x\n", "COPY failed"),
    ],
)
def test_a_broken_dockerfile_is_exit_2_naming_it(
    tmp_path: Path, dockerfile: str, docker_says: str
) -> None:
    from mlcd.errors import UserInputError
    from mlcd.tools import docker

    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile)
    with pytest.raises(UserInputError, match=docker_says) as caught:
        docker.build(tmp_path, dockerfile=path)
    assert caught.value.exit_code == 2
    assert str(path) in caught.value.message
