"""Settings, the wheelhouse lock, mlcd's own wheel, releases, evidence and the Docker adapter."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mlcd import releases
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.image import wheelhouse
from mlcd.registry import LocalRegistry
from mlcd.serve.metrics import RecentBuffer, regression_buckets
from mlcd.serve.settings import from_env
from mlcd.stages.release import evidence_tarball
from mlcd.tools import docker
from mlcd.tools.base import ToolResult

ROOT = Path(__file__).resolve().parents[2]


def test_settings_from_env() -> None:
    s = from_env({"MLCD_MODEL_DIR": "/m", "MLCD_PORT": "9000", "MLCD_WORKERS": "3"})
    assert (str(s.model_dir), s.port, s.worker_count) == ("/m", 9000, 3)
    assert from_env({}).port == 8080
    assert from_env({}).worker_count >= 1
    with pytest.raises(UserInputError, match="MLCD_PORT='x' is not an integer"):
        from_env({"MLCD_PORT": "x"})
    with pytest.raises(UserInputError, match="out of range"):
        from_env({"MLCD_PORT": "70000"})
    with pytest.raises(UserInputError, match="not a number"):
        from_env({"MLCD_BATCH_WAIT_MS": "nan"})


def test_the_lock_matches_constraints_and_holds_only_runtime_packages() -> None:
    pins = wheelhouse.parse_lock(wheelhouse.lock_text())
    constraints = wheelhouse.parse_constraints((ROOT / "constraints.txt").read_text())
    names = {p.name for p in pins}
    for pin in pins:
        assert constraints.get(pin.name) == pin.version, (
            f"{pin.name}: lock {pin.version}, constraints {constraints.get(pin.name)}; "
            "run make serve-lock"
        )
    assert {"numpy", "scipy", "scikit-learn", "skops", "uvloop", "httptools"} <= names
    assert not names & {"ruff", "bandit", "pytest", "matplotlib", "pandas", "mypy", "pydantic"}


def test_a_dataframe_model_gets_pandas_from_its_own_lock(tmp_path: Path) -> None:
    from mlcd.stages.build import serving_pins

    extra = wheelhouse.parse_lock(wheelhouse.lock_text(wheelhouse.DATAFRAME_LOCK_RESOURCE))
    constraints = wheelhouse.parse_constraints((ROOT / "constraints.txt").read_text())
    for pin in extra:
        assert constraints.get(pin.name) == pin.version, f"{pin.name}: run make serve-lock"
    base = {p.name for p in wheelhouse.parse_lock(wheelhouse.lock_text())}
    assert "pandas" in {p.name for p in extra}
    assert not base & {p.name for p in extra}  # only what the base lock does not hold
    number = [{"name": "a", "dtype": "float64", "kind": "number"}]
    for fmt, has_pandas in (("dataframe", True), ("array", False)):
        meta = {"task": "regression", "features": number, "input": {"format": fmt}}
        (tmp_path / "model.json").write_text(json.dumps(meta))
        assert ("pandas" in {p.name for p in serving_pins(tmp_path)}) is has_pandas
    legacy = {
        "task": "regression",
        "features": [{"name": "a", "dtype": "object", "categories": ["x"]}],
    }
    (tmp_path / "model.json").write_text(json.dumps(legacy))
    assert "pandas" in {p.name for p in serving_pins(tmp_path)}
    legacy = {
        "task": "regression",
        "features": [{"name": "a", "dtype": "float64", "categories": None}],
    }
    (tmp_path / "model.json").write_text(json.dumps(legacy))
    assert "pandas" not in {p.name for p in serving_pins(tmp_path)}


def test_a_bad_lock_line_is_named() -> None:
    with pytest.raises(UserInputError, match=r"lock\.txt:2"):
        wheelhouse.parse_lock("# c\nnumpy>=1\n", "lock.txt")


def test_own_wheel_is_reproducible_and_complete(tmp_path: Path) -> None:
    first = wheelhouse.build_self_wheel(tmp_path / "a").read_bytes()
    second = wheelhouse.build_self_wheel(tmp_path / "b").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a" / next((tmp_path / "a").iterdir()).name) as archive:
        names = archive.namelist()
    assert "mlcd/serve/server.py" in names
    assert "mlcd/data/Dockerfile" in names
    assert "mlcd/data/serve-requirements.txt" in names
    assert not [n for n in names if "__pycache__" in n]
    assert any(n.endswith(".dist-info/RECORD") for n in names)


def test_recent_buffer_wraps_and_truncates() -> None:
    ring = RecentBuffer(capacity=4, workers=2)
    for i in range(6):
        ring.bind(i % 2)
        ring.add({"request_id": f"r{i}", "predictions": [i], "status": 200, "time": float(i)})
    ring.add({"request_id": "big", "predictions": list(range(2000)), "status": 200, "time": 9.0})
    got = ring.recent(100)
    assert [r["request_id"] for r in got] == [f"r{i}" for i in range(6)] + ["big"]
    assert got[-1]["predictions"] is None
    assert got[-1]["truncated"] is True
    assert [r["request_id"] for r in ring.recent(2)] == ["r5", "big"]
    assert [r["request_id"] for r in ring.recent(100, since=4.0)] == ["r5", "big"]


def test_regression_buckets() -> None:
    assert regression_buckets(0, 20)[0] == 1.0
    assert regression_buckets(0, 20)[-1] == 20.0
    assert 0.0 in regression_buckets(None, None)


def _registry_with_model(tmp_path: Path) -> tuple[LocalRegistry, str]:
    registry = LocalRegistry(tmp_path / "reg")
    model = tmp_path / "m.skops"
    model.write_bytes(b"model")
    version = registry.register(
        model_file=model, metadata={"fingerprint": "f"}, metrics={}, verdict=None
    )
    return registry, version.version


def test_release_versions(tmp_path: Path) -> None:
    registry, model_version = _registry_with_model(tmp_path)
    assert releases.next_version(registry) == "0.1.0"
    for version, image_id in (("0.1.0", "sha256:" + "a" * 64), ("0.1.9", "sha256:" + "b" * 64)):
        registry.append(
            model_version,
            releases.RELEASES,
            {"version": version, "image": f"r/x@sha256:{'c' * 64}", "image_id": image_id},
        )
    assert releases.next_version(registry) == "0.1.10"
    assert releases.get(registry, "0.1.9").image_id.endswith("b" * 64)
    assert releases.find_by_image(registry, "b" * 64).version == "0.1.9"  # type: ignore[union-attr]
    assert releases.find_by_image(registry, "d" * 64) is None
    with pytest.raises(UserInputError, match=r"no release 2\.0\.0"):
        releases.get(registry, "2.0.0")
    with pytest.raises(UserInputError, match=r"MAJOR\.MINOR\.PATCH"):
        releases.parse_version("v1")


def test_evidence_tarball_is_reproducible(tmp_path: Path) -> None:
    bundle = tmp_path / ".mlcd"
    (bundle / "train").mkdir(parents=True)
    (bundle / "train" / "result.json").write_text("{}")
    (bundle / "build" / "context" / "wheels").mkdir(parents=True)
    (bundle / "build" / "context" / "wheels" / "big.whl").write_text("x")
    (bundle / "release").mkdir()
    first = evidence_tarball(bundle, tmp_path / "a.tgz")
    (bundle / "train" / "result.json").touch()
    assert evidence_tarball(bundle, tmp_path / "b.tgz") == first
    import tarfile

    with tarfile.open(tmp_path / "a.tgz") as archive:
        assert archive.getnames() == ["evidence/train/result.json"]


def test_docker_engine_down_is_exit_3_with_how_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "_docker", lambda: "docker")
    monkeypatch.setattr(
        docker,
        "run",
        lambda argv, **_: ToolResult(
            tuple(argv), 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"
        ),
    )
    with pytest.raises(EnvironmentMissing) as caught:
        docker.ping()
    assert caught.value.exit_code == 3
    assert "scripts/setup/docker.sh" in (caught.value.hint or "")


def test_docker_push_reads_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "_docker", lambda: "docker")
    out = "0.1.0: digest: sha256:" + "e" * 64 + " size: 1234\n"
    monkeypatch.setattr(docker, "run", lambda argv, **_: ToolResult(tuple(argv), 0, out, ""))
    assert docker.push("r/x:0.1.0") == "sha256:" + "e" * 64
    inspect = json.dumps([{"Id": "sha256:1", "Size": 5}])
    monkeypatch.setattr(docker, "run", lambda argv, **_: ToolResult(tuple(argv), 0, inspect, ""))
    assert docker.inspect_image("x") == {"Id": "sha256:1", "Size": 5}


def test_docker_missing_is_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EnvironmentMissing, match="docker"):
        docker.ping()


def test_cgroup_cpu_limit(tmp_path: Path) -> None:
    from mlcd.serve.settings import cgroup_cpu_limit

    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 2


def test_the_server_can_import_typedrows_without_pandas_or_pydantic() -> None:
    # serve.app takes V2_DATATYPE from typedrows: the serving image has neither pandas nor
    # pydantic, so typedrows may import only the standard library at module level
    import ast
    import sys

    from mlcd import typedrows

    # typedrows takes the kind rule from mlcd.modelmeta (which takes its exceptions from
    # mlcd.errors): follow mlcd's own modules, every other import must be the stdlib's
    seen: set[str] = set()
    todo = ["mlcd.typedrows"]
    roots: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = Path(typedrows.__file__).parent.joinpath(*name.split(".")[1:]).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "mlcd":
                todo += [f"mlcd.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlcd."):
                todo.append(str(node.module))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                roots |= {
                    (node.module or "").split(".")[0]
                    if isinstance(node, ast.ImportFrom)
                    else a.name.split(".")[0]
                    for a in node.names
                }
    assert {"mlcd.typedrows", "mlcd.modelmeta", "mlcd.errors"} <= seen, seen
    assert roots <= sys.stdlib_module_names | {"__future__"}, roots
