"""A failed `docker build` is exit 2 when the Dockerfile is at fault, exit 3 when the machine
is (the classic builder's own messages, as the engine prints them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.errors import EnvironmentMissing, MlcdError, UserInputError
from mlcd.tools import docker
from mlcd.tools.base import ToolResult

DOCKERFILE_FAULTS = [
    ("", "Error response from daemon: dockerfile parse error line 3: unknown instruction: FOO"),
    (
        "Step 2/3 : RUN false\n ---> Running in 0a1b2c",
        "The command '/bin/sh -c false' returned a non-zero code: 1",
    ),
    (
        "Step 2/2 : COPY nope /x",
        (
            "COPY failed: file not found in build context or excluded by .dockerignore: "
            "stat nope: file does not exist"
        ),
    ),
]
MACHINE_FAULTS = [
    (
        "Step 1/2 : FROM local/absent",
        (
            "Error response from daemon: pull access denied for local/absent, "
            "repository does not exist or may require 'docker login'"
        ),
    ),
    (
        "Step 3/9 : RUN pip install",
        "failed to copy files: write /var/lib/docker/tmp/x: no space left on device",
    ),
]


def _build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stdout: str, stderr: str) -> MlcdError:
    monkeypatch.setattr(docker, "_docker", lambda: "docker")
    monkeypatch.setattr(docker, "run", lambda argv, **_: ToolResult(tuple(argv), 1, stdout, stderr))
    dockerfile = tmp_path / "Dockerfile"
    with pytest.raises(MlcdError) as caught:
        docker.build(tmp_path, dockerfile=dockerfile)
    return caught.value


@pytest.mark.parametrize(("stdout", "stderr"), DOCKERFILE_FAULTS)
def test_a_broken_dockerfile_is_the_users_input_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stdout: str, stderr: str
) -> None:
    error = _build(monkeypatch, tmp_path, stdout, stderr)
    assert isinstance(error, UserInputError)
    assert error.exit_code == 2
    assert str(tmp_path / "Dockerfile") in error.message
    assert stderr[:40] in error.message
    assert error.problems == ([stdout] if stdout else [])


@pytest.mark.parametrize(("stdout", "stderr"), MACHINE_FAULTS)
def test_what_the_machine_lacks_stays_exit_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stdout: str, stderr: str
) -> None:
    error = _build(monkeypatch, tmp_path, stdout, stderr)
    assert isinstance(error, docker.DockerError)
    assert isinstance(error, EnvironmentMissing)
    assert error.exit_code == 3
    assert stderr[:40] in error.message
