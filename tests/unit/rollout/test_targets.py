"""Deploy targets without running anything: addresses, credentials, refusals, Argo outcomes."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcd.config import EnvironmentSection, load_config
from mlcd.errors import UserInputError
from mlcd.rollout.targets import KNOWN_HOSTS_ENV, SSH_KEY_ENV, transport_for
from mlcd.rollout.targets.kubernetes import classify
from mlcd.stages.deploy import refuse_ephemeral
from mlcd.tools.ssh import parse_url

pytestmark = pytest.mark.unit

KNOWN = "10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkey\n"


@pytest.mark.parametrize(
    ("text", "user", "host", "port"),
    [
        ("ssh://deploy@ml.example.com", "deploy", "ml.example.com", 22),
        ("ssh://root@10.231.77.2:2222", "root", "10.231.77.2", 2222),
        ("ssh://server", "", "server", 22),
    ],
)
def test_ssh_addresses(text: str, user: str, host: str, port: int) -> None:
    url = parse_url(text)
    assert (url.user, url.host, url.port) == (user, host, port)
    assert parse_url(url.url) == url


@pytest.mark.parametrize("text", ["deploy@server", "ssh://a@b:99999", "http://x", "ssh://a b"])
def test_bad_ssh_addresses_are_input_errors(text: str) -> None:
    with pytest.raises(UserInputError) as info:
        parse_url(text, where="environments.staging.host")
    assert info.value.exit_code == 2
    assert "environments.staging.host" in info.value.message


def _config(tmp_path: Path, env: dict[str, Any]) -> Path:
    data = {
        "version": 1,
        "project": "p",
        "model": {"task": "classification", "entrypoint": "t.py:f", "data": "d.csv", "target": "y"},
        "environments": {"staging": env},
    }
    path = tmp_path / "mlcd.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"target": "docker-host"}, "needs `host"),
        ({"target": "local", "host": "ssh://a@b"}, "is for targets docker-host and swarm"),
        ({"target": "docker-host", "host": "a@b"}, "host"),
    ],
)
def test_docker_host_keys_are_checked_with_file_and_line(
    tmp_path: Path, env: dict[str, Any], needle: str
) -> None:
    path = _config(tmp_path, env)
    with pytest.raises(UserInputError) as info:
        load_config(path)
    text = str(info.value.message) + " ".join(info.value.problems)
    assert needle in text
    assert "mlcd.yaml:" in text


def test_no_host_key_is_refused_never_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KNOWN_HOSTS_ENV, raising=False)
    section = EnvironmentSection(target="docker-host", host="ssh://deploy@10.0.0.5")
    with pytest.raises(UserInputError) as info:
        transport_for("staging", section, tmp_path)
    assert info.value.exit_code == 2
    assert KNOWN_HOSTS_ENV in (info.value.hint or "")


def test_secrets_go_to_a_private_folder_that_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KNOWN_HOSTS_ENV, KNOWN)
    monkeypatch.setenv(SSH_KEY_ENV, "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n")
    monkeypatch.setattr("mlcd.tools.ssh.find_program", lambda *_a, **_k: "/usr/bin/ssh")
    section = EnvironmentSection(target="docker-host", host="ssh://deploy@10.0.0.5:2222")
    transport = transport_for("staging", section, tmp_path)
    folder = transport.folder
    try:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for name in ("config", "known_hosts", "id_key"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        config = (folder / "config").read_text()
        assert "StrictHostKeyChecking yes" in config
        assert f"IdentityFile {folder / 'id_key'}" in config
        assert (folder / "known_hosts").read_text() == KNOWN
        env = transport.docker_env
        assert env["DOCKER_HOST"] == "ssh://deploy@10.0.0.5:2222"
        assert env["PATH"].startswith(str(folder))
        assert "-F" in (folder / "ssh").read_text()
    finally:
        transport.close()
    assert not folder.exists()


def test_local_target_is_refused_on_a_github_hosted_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNNER_ENVIRONMENT", "github-hosted")
    with pytest.raises(UserInputError) as info:
        refuse_ephemeral("staging", EnvironmentSection())
    assert info.value.exit_code == 2
    assert "docker-host" in (info.value.hint or "")
    refuse_ephemeral("staging", EnvironmentSection(target="docker-host", host="ssh://a@b"))
    monkeypatch.setenv("RUNNER_ENVIRONMENT", "self-hosted")
    refuse_ephemeral("staging", EnvironmentSection())


def _rollout(phase: str, *, generation: int = 2, observed: int = 2, **status: Any) -> Any:
    return {
        "metadata": {"generation": generation},
        "status": {"observedGeneration": str(observed), "phase": phase, **status},
    }


@pytest.mark.parametrize(
    ("rollout", "outcome"),
    [
        (_rollout("Healthy", observed=1, currentPodHash="b", stableRS="b"), None),
        (_rollout("Progressing"), None),
        (_rollout("Paused", pauseConditions=[{"reason": "CanaryPauseStep"}]), None),
        (_rollout("Healthy", currentPodHash="b", stableRS="a"), None),
        (_rollout("Healthy", currentPodHash="b", stableRS="b"), "promoted"),
        (_rollout("Degraded"), "rolled back"),
        (_rollout("Progressing", abort=True), "rolled back"),
        (_rollout("Paused", pauseConditions=[{"reason": "InconclusiveAnalysisRun"}]), "paused"),
    ],
)
def test_argo_rollout_outcomes(rollout: Any, outcome: str | None) -> None:
    assert classify(rollout) == outcome
