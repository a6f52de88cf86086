"""The project is the project: what every adapter leaves out (mlcd.projectfiles), and
which test dependencies `mlcd deps` installs (mlcd.deps), on layouts made on disk."""

from __future__ import annotations

import fnmatch
import textwrap
from pathlib import Path

import pytest

from mlcd import deps, projectfiles
from mlcd.config import LoadedConfig, load_config
from mlcd.errors import UserInputError

pytestmark = pytest.mark.unit

CONFIG = """\
version: 1
project: p
model: {task: classification, entrypoint: train.py:build_model, data: d.csv, target: y}
"""


def _loaded(root: Path, extra: str = "") -> LoadedConfig:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "mlcd.yaml"
    path.write_text(CONFIG + textwrap.dedent(extra))
    return load_config(path)


def test_the_kit_checkout_run_and_registry_folders_and_virtualenvs_are_left_out(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    loaded = _loaded(repo)
    (repo / ".mlcd-kit" / "scripts" / "mlcd").mkdir(parents=True)
    (repo / "env311").mkdir()
    (repo / "env311" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (repo / "src").mkdir()
    found = projectfiles.exclusions(loaded, repo / ".mlcd", repo)
    assert repo / ".mlcd-kit" in found.folders
    assert repo / ".mlcd" in found.folders
    assert repo / ".mlcd-registry" in found.folders
    assert repo / ".mlcd-state" in found.folders
    assert repo / "env311" in found.folders
    assert found.excludes(repo / ".mlcd-kit" / "scripts" / "mlcd" / "cli.py")
    assert found.excludes(repo / "env311" / "lib" / "x.py")
    assert found.excludes(repo / "src" / "__pycache__" / "m.py")
    assert not found.excludes(repo / "src" / "model.py")
    assert not found.excludes(repo / "train.py")


def test_folder_names_count_only_below_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "venv" / "work" / "repo"  # the repository itself lies under `venv/`
    loaded = _loaded(repo)
    found = projectfiles.exclusions(loaded, repo / ".mlcd", repo)
    assert not found.excludes(repo / "train.py")
    assert found.excludes(repo / "pkg" / "venv" / "x.py")
    # bandit's -x and pytest's --ignore-glob are anchored at the repository too
    patterns = found.bandit_exclude().split(",")
    bandit_out = [p for p in patterns if fnmatch.fnmatch(str(repo / "train.py"), p)]
    assert bandit_out == []
    assert not any(p in str(repo / "train.py") for p in patterns if "*" not in p)
    assert any(fnmatch.fnmatch(str(repo / ".mlcd-kit" / "tests" / "t.py"), p) for p in patterns)
    globs = [a.split("=", 1)[1] for a in found.pytest_args() if a.startswith("--ignore-glob=")]
    assert any(fnmatch.fnmatch(str(repo / "sub" / ".mlcd-kit"), g) for g in globs)
    assert not any(fnmatch.fnmatch(str(repo / "tests"), g) for g in globs)


def test_folders_outside_the_repository_are_not_listed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    loaded = _loaded(repo)
    found = projectfiles.exclusions(loaded, tmp_path / "elsewhere" / ".mlcd", repo)
    assert all(repo in f.parents for f in found.folders)
    assert "--force-exclude" in found.ruff_args()
    assert ".mlcd-kit" in found.ruff_args()
    assert Path("**/.mlcd-kit") in found.trivy_skip_dirs()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_requirements_files_beside_the_config_and_at_the_root_but_not_the_models(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    loaded = _loaded(repo / "model")
    _write(repo / "model" / "requirements-test.txt", "pytest\n")
    _write(repo / "requirements.txt", "tomli-w\n")
    sources, notes = deps.test_sources(loaded, repo)
    assert [s.shown for s in sources] == ["model/requirements-test.txt", "requirements.txt"]
    assert notes == []


def test_the_model_requirements_file_is_not_a_test_requirement(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "mlcd.yaml").write_text(
        "version: 1\nproject: p\nmodel: {task: classification, entrypoint: "
        "train.py:build_model, data: d.csv, target: y, requirements: requirements.txt}\n"
    )
    loaded = load_config(root / "mlcd.yaml")
    assert loaded.config.model.requirements == "requirements.txt"
    _write(root / "requirements.txt", "lightgbm==4.6.0\n")
    _write(root / "requirements-dev.txt", "pytest\n")
    sources, _ = deps.test_sources(loaded, root)
    assert [s.shown for s in sources] == ["requirements-dev.txt"]


def test_pyproject_dependencies_and_the_test_extra(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    loaded = _loaded(root)
    _write(
        root / "pyproject.toml",
        '[project]\nname = "x"\nversion = "1"\ndependencies = ["pandas>=2"]\n'
        '[project.optional-dependencies]\ndocs = ["mkdocs"]\ntests = ["hypothesis"]\n',
    )
    sources, _ = deps.test_sources(loaded, root)
    assert len(sources) == 1
    assert sources[0].shown == "pyproject.toml"
    assert sources[0].packages == ("pandas>=2", "hypothesis")


def test_both_kinds_declared_is_exit_2_until_test_install_says_which(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    loaded = _loaded(root)
    _write(root / "pyproject.toml", '[project]\nname = "x"\ndependencies = ["pandas"]\n')
    _write(root / "requirements-dev.txt", "pytest\n")
    with pytest.raises(UserInputError) as info:
        deps.test_sources(loaded, root)
    assert "test: {install: requirements}" in (info.value.hint or "")
    chosen = _loaded(root, "test: {install: pyproject}\n")
    sources, _ = deps.test_sources(chosen, root)
    assert [s.shown for s in sources] == ["pyproject.toml"]
    chosen = _loaded(root, "test: {install: requirements}\n")
    sources, _ = deps.test_sources(chosen, root)
    assert [s.shown for s in sources] == ["requirements-dev.txt"]
    none = _loaded(root, "test: {install: none}\n")
    assert deps.test_sources(none, root)[0] == []


def test_a_named_test_requirements_file_that_is_missing_is_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    loaded = _loaded(root, "test: {requirements: [ci/test-requirements.txt]}\n")
    with pytest.raises(UserInputError) as info:
        deps.test_sources(loaded, root)
    assert info.value.exit_code == 2
    assert "test.requirements names `ci/test-requirements.txt`" in info.value.message


def test_nothing_declared_installs_nothing_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    sources, notes = deps.test_sources(_loaded(root), root)
    assert sources == []
    assert "none declared" in notes[0]


def test_test_requirements_with_another_install_kind_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as info:
        _loaded(tmp_path / "repo", "test: {install: none, requirements: [r.txt]}\n")
    assert "test:" in info.value.render()
    assert "install: requirements" in info.value.render()


def test_the_running_mlcds_repository_inside_the_project_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    loaded = _loaded(repo)
    vendored = repo / "tools" / "mlcd"  # mlcd checked out (and run) under another name
    vendored.mkdir(parents=True)
    monkeypatch.setattr(projectfiles, "kit_root", lambda: vendored)
    found = projectfiles.exclusions(loaded, repo / ".mlcd", repo)
    assert vendored in found.folders
    assert found.excludes(vendored / "scripts" / "mlcd" / "cli.py")
    # the other way round (the project inside mlcd's repository, as the kit's own
    # model/ and zoo) leaves nothing of the project out
    monkeypatch.setattr(projectfiles, "kit_root", lambda: tmp_path)
    found = projectfiles.exclusions(loaded, repo / ".mlcd", repo)
    assert tmp_path not in found.folders
    assert not found.excludes(repo / "train.py")
