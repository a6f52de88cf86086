"""`model.requirements` with the real pip: resolved for the image's platform, pinned and
hashed, cached; a requirement that cannot be met is exit 2; no index reachable is exit 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.image import wheelhouse

pytestmark = pytest.mark.integration


def _lock() -> list[wheelhouse.Pin]:
    return wheelhouse.parse_lock(wheelhouse.lock_text())


def test_a_requirement_resolves_to_hashed_wheels_and_then_needs_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("imbalanced-learn==0.14.2\n")
    cache = tmp_path / "cache"
    pins = wheelhouse.model_requirements(requirements, "requirements.txt", _lock(), cache)
    names = {p.name: p for p in pins}
    # the package and what it needs beyond the server's own pins, nothing the lock has
    assert names["imbalanced-learn"].version == "0.14.2"
    assert "scikit-learn" not in names
    assert "numpy" not in names
    for pin in pins:
        wheel = next(cache.glob(f"{pin.name.replace('-', '_')}-{pin.version}-*.whl"))
        assert wheelhouse.sha256_file(wheel) == pin.sha256
    # the second time the cache answers: no index at all is needed
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    assert wheelhouse.model_requirements(requirements, "requirements.txt", _lock(), cache) == pins


def test_a_requirement_no_wheel_satisfies_is_exit_2(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("imbalanced-learn==0.0.999\n")
    with pytest.raises(UserInputError) as info:
        wheelhouse.model_requirements(requirements, "requirements.txt", _lock(), tmp_path / "c")
    assert info.value.exit_code == 2
    assert info.value.message.startswith(
        "model.requirements: requirements.txt: pip cannot resolve it for the serving image"
    )
    assert "imbalanced-learn==0.0.999" in info.value.render()


def test_no_index_reachable_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "3")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("imbalanced-learn==0.14.2\n")
    with pytest.raises(EnvironmentMissing) as info:
        wheelhouse.model_requirements(requirements, "requirements.txt", _lock(), tmp_path / "c")
    assert info.value.exit_code == 3
    assert "the wheels of model.requirements (requirements.txt)" in info.value.message
