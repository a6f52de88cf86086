"""`mlcd deps` with the real pip, in a fresh throw-away virtualenv: a project that needs
LightGBM from PyPI (model.requirements) and a test dependency of its own
(requirements-dev.txt) gets both, LightGBM as the same hash-checked wheel the image gets,
and then trains there; an unknown package is exit 2 naming it; no index is exit 3."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlcd.image import wheelhouse

pytestmark = pytest.mark.integration

LIGHTGBM = "lightgbm==4.6.0"
DEV = "tomli-w==1.2.0"  # small, pure Python, not among mlcd's own dependencies


def _project(folder: Path, model_requirement: str) -> Path:
    folder.mkdir(parents=True)
    rows = ["f1,f2,label"] + [f"{i % 7},{(i * 3) % 11},{int(i % 7 > 3)}" for i in range(80)]
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    (folder / "train.py").write_text(
        textwrap.dedent(
            """
            from lightgbm import LGBMClassifier


            def build_model():
                return LGBMClassifier(n_estimators=5, min_child_samples=2, verbose=-1)
            """
        )
    )
    (folder / "requirements-model.txt").write_text(model_requirement + "\n")
    (folder / "requirements-dev.txt").write_text(DEV + "\n")
    (folder / "mlcd.yaml").write_text(
        textwrap.dedent(
            """
            version: 1
            project: deps-lgbm
            model:
              task: classification
              entrypoint: train.py:build_model
              data: data.csv
              target: label
              requirements: requirements-model.txt
              trusted-types: [lightgbm.sklearn.LGBMClassifier, lightgbm.basic.Booster]
            registry: {backend: local}
            """
        )
    )
    return folder / "mlcd.yaml"


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv that sees mlcd and its dependencies (this one's site-packages,
    added after its own) but installs into its own site-packages."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    (Path(purelib) / "zz_mlcd_under_test.pth").write_text(lines)
    return python


def _run(
    python: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "mlcd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=1800,
        check=False,
    )


def test_deps_installs_the_image_wheels_and_the_test_requirements(
    fresh_python: Path, tmp_path: Path
) -> None:
    config = _project(tmp_path / "proj", LIGHTGBM)
    cache = tmp_path / "wheels"
    probe = [str(fresh_python), "-c", "import lightgbm, tomli_w"]
    assert subprocess.run(probe, capture_output=True, check=False).returncode != 0
    done = _run(
        fresh_python,
        "deps",
        "--config",
        str(config),
        "--wheel-cache",
        str(cache),
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    installed = {item["name"].lower().replace("_", "-"): item for item in report["installed"]}
    assert installed["lightgbm"]["version"] == "4.6.0"
    assert installed["lightgbm"]["for"] == "model"
    assert installed["tomli-w"]["for"] == "test"
    assert installed["tomli-w"]["source"] == "requirements-dev.txt"
    assert "numpy" not in installed
    assert "scikit-learn" not in installed
    # the very wheel the image gets: the build's resolution names the same sha256
    image_pins = wheelhouse.model_requirements(
        config.parent / "requirements-model.txt",
        "requirements-model.txt",
        wheelhouse.serving_pins(dataframe=False),
        cache,
    )
    assert installed["lightgbm"]["sha256"] == next(
        p.sha256 for p in image_pins if p.name == "lightgbm"
    )
    assert subprocess.run(probe, capture_output=True, check=False).returncode == 0
    # and the project trains in that environment
    trained = _run(
        fresh_python,
        "train",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    # a second time: nothing new to install, still exit 0, in text
    again = _run(
        fresh_python, "deps", "--config", str(config), "--wheel-cache", str(cache), cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert "already installed: everything model.requirements: requirements-model.txt" in (
        again.stdout
    )


def test_an_unknown_package_is_exit_2_naming_it(fresh_python: Path, tmp_path: Path) -> None:
    config = _project(tmp_path / "proj", "mlcd-no-such-package-anywhere==1.0")
    done = _run(
        fresh_python,
        "deps",
        "--for",
        "model",
        "--config",
        str(config),
        "--wheel-cache",
        str(tmp_path / "wheels"),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "model.requirements: requirements-model.txt" in done.stderr
    assert "mlcd-no-such-package-anywhere" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_index_is_exit_3(fresh_python: Path, tmp_path: Path) -> None:
    config = _project(tmp_path / "proj", LIGHTGBM)
    (config.parent / "requirements-dev.txt").write_text("mlcd-test-only-package==9.9\n")
    done = _run(
        fresh_python,
        "deps",
        "--for",
        "test",
        "--config",
        str(config),
        cwd=tmp_path,
        env={
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "PIP_DEFAULT_TIMEOUT": "3",
        },
    )
    assert done.returncode == 3, done.stderr
    assert "requirements-dev.txt" in done.stderr
    assert "Traceback" not in done.stderr
