"""The model-artifact scanner reads model files without loading them."""

from __future__ import annotations

import io
import json
import pickle
import posix
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlcd.security import allowlist
from mlcd.security.modelscan import (
    RULE_DANGEROUS,
    RULE_UNREADABLE,
    RULE_UNTRUSTED,
    RULE_UNTRUSTED_TYPE,
    scan_model_file,
)
from mlcd.security.picklescan import walk


class RunsACommand:
    """Unpickling this calls os.system(command): the classic booby-trapped model."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        # posix.system is os.system; the unit-test guard replaces only the os attribute
        return (posix.system, (self.command,))


class CallsEval:
    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, ("1+1",))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((120, 4))
    return x, (x[:, 0] > 0.5).astype(int)


@pytest.fixture(scope="module")
def models(data: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    x, y = data
    return {
        "logistic": LogisticRegression().fit(x, y),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        "pipeline": make_pipeline(
            FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression()
        ).fit(x, y),
    }


def ids(findings: list[Any]) -> list[tuple[str, str]]:
    return [(f.id, f.package) for f in findings]


@pytest.mark.parametrize("name", ["logistic", "forest", "pipeline"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_clean_sklearn_pickles_pass(
    tmp_path: Path, models: dict[str, Any], name: str, protocol: int
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(models[name], protocol=protocol))
    assert scan_model_file(path) == []


@pytest.mark.parametrize("compress", [0, 3, ("zlib", 3), ("xz", 1), ("bz2", 1), ("lzma", 1)])
def test_clean_joblib_files_pass(tmp_path: Path, models: dict[str, Any], compress: Any) -> None:
    path = tmp_path / "model.joblib"
    model = models["forest"]
    joblib.dump(
        {"model": model, "labels": np.array(["a", None, 3], dtype=object)}, path, compress=compress
    )
    assert scan_model_file(path) == []


def test_os_system_is_critical_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": np.zeros(3), "x": RunsACommand(f"touch {marker}")}))
    findings = scan_model_file(path, shown="evil.pkl")
    assert ids(findings) == [(RULE_DANGEROUS, "posix.system")]
    assert findings[0].severity == "CRITICAL"
    assert "os.system" in findings[0].title
    assert findings[0].blocking
    assert not marker.exists()


def test_dangerous_global_inside_joblib_after_arrays(
    tmp_path: Path, models: dict[str, Any]
) -> None:
    """The array bytes joblib writes into the stream are skipped, so a global placed after
    them is still seen."""
    path = tmp_path / "evil.joblib"
    joblib.dump([models["forest"], np.arange(1000.0), CallsEval()], path, compress=3)
    assert ids(scan_model_file(path)) == [(RULE_DANGEROUS, "builtins.eval")]


def test_stack_global_names_from_the_memo_are_resolved() -> None:
    # protocol 4 memoizes strings; re-use 'posix' from the memo through BINGET
    stream = (
        b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93\x94"  # posix.system, memo 0,1,2
        b"h\x00\x8c\x04path\x94\x93\x94"  # BINGET 0 ('posix') + 'path' -> posix.path
        b"0h\x02\x8c\x02id\x85R."  # POP; BINGET 2 (system); ('id',); REDUCE; STOP
    )
    found = walk(io.BytesIO(stream))
    assert [i.qualified for i in found.imports] == ["posix.system", "posix.path"]


def test_computed_global_is_critical(tmp_path: Path) -> None:
    # STACK_GLOBAL whose module comes from a call result: the scanner cannot name it
    stream = b"\x80\x04cbuiltins\nstr\n)R\x8c\x04eval\x93)R."
    path = tmp_path / "dyn.pkl"
    path.write_bytes(stream)
    found = scan_model_file(path)
    assert [f.id for f in found] == [RULE_DANGEROUS]
    assert found[0].title.count("computes at load time") == 1


def test_unknown_callable_fails_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "custom.pkl"
    path.write_bytes(b"\x80\x02cmycompany.features\nBucketizer\n)\x81.")
    (finding,) = scan_model_file(path)
    assert (finding.id, finding.severity, finding.package) == (
        RULE_UNTRUSTED,
        "HIGH",
        "mycompany.features.Bucketizer",
    )


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty"),
        (b"hello world, not a pickle", "not a readable pickle"),
        (pickle.dumps(list(range(100)))[:-40], "not a readable pickle"),
    ],
)
def test_unreadable_files_are_findings(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "broken.pkl"
    path.write_bytes(content)
    (finding,) = scan_model_file(path)
    assert finding.id == RULE_UNREADABLE
    assert why in finding.title


def test_truncated_joblib_is_a_finding(tmp_path: Path, models: dict[str, Any]) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(models["forest"], path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (finding,) = scan_model_file(path)
    assert finding.id == RULE_UNREADABLE
    assert "truncated" in finding.title


def test_pickle_inside_a_zip_container(tmp_path: Path, models: dict[str, Any]) -> None:
    """A torch-style checkpoint: a zip whose data.pkl is a pickle."""
    path = tmp_path / "checkpoint.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(models["logistic"], protocol=2))
        archive.writestr("archive/extra.bin", pickle.dumps(RunsACommand("true"), protocol=2))
        archive.writestr("archive/data/0", b"\x00" * 64)
    found = scan_model_file(path, shown="checkpoint.pt")
    assert ids(found) == [(RULE_DANGEROUS, "posix.system")]
    assert "checkpoint.pt!archive/extra.bin" in found[0].title


def test_npy_object_array_is_read_as_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "arr.npy"
    np.save(path, np.array([RunsACommand("true"), 1], dtype=object), allow_pickle=True)
    assert ids(scan_model_file(path)) == [(RULE_DANGEROUS, "posix.system")]
    np.save(path, np.arange(5.0))
    assert scan_model_file(path) == []


def test_clean_skops_model_passes(tmp_path: Path, models: dict[str, Any]) -> None:
    path = tmp_path / "model.skops"
    sio.dump(models["pipeline"], path)
    assert scan_model_file(path) == []


def _rewrite_skops(src: Path, dst: Path, module: str, name: str) -> None:
    """Point the file's function node (np.log1p in the pipeline) at another callable."""
    with zipfile.ZipFile(src) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    schema = json.loads(members["schema.json"])

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("__loader__") == "FunctionNode":
                node["__module__"], node["__class__"] = module, name
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


def test_skops_untrusted_and_dangerous_types(tmp_path: Path, models: dict[str, Any]) -> None:
    clean = tmp_path / "clean.skops"
    sio.dump(models["pipeline"], clean)
    evil = tmp_path / "evil.skops"
    _rewrite_skops(clean, evil, "posix", "system")
    (finding,) = scan_model_file(evil, shown="evil.skops")
    assert (finding.id, finding.severity, finding.package) == (
        RULE_DANGEROUS,
        "CRITICAL",
        "posix.system",
    )
    odd = tmp_path / "odd.skops"
    _rewrite_skops(clean, odd, "mycompany.features", "scale")
    (finding,) = scan_model_file(odd)
    assert (finding.id, finding.package) == (RULE_UNTRUSTED_TYPE, "mycompany.features.scale")


def test_skops_types_the_loader_trusts_pass(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """A tree needs sklearn.tree._tree.Tree, outside skops's defaults but on the loader's
    list (mlcd.modelio.TRUSTED_TYPES), so the scanner accepts it as the loader would."""
    x, y = data
    path = tmp_path / "forest.skops"
    sio.dump(RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y), path)
    assert "sklearn.tree._tree.Tree" in sio.get_untrusted_types(file=path)
    assert scan_model_file(path) == []


def test_damaged_skops_is_a_finding(tmp_path: Path, models: dict[str, Any]) -> None:
    path = tmp_path / "model.skops"
    sio.dump(models["logistic"], path)
    path.write_bytes(path.read_bytes()[:200])
    (finding,) = scan_model_file(path)
    assert finding.id == RULE_UNREADABLE


@pytest.mark.parametrize(
    "name",
    [
        "posix.system",
        "os.system",
        "subprocess.Popen",
        "builtins.eval",
        "builtins.exec",
        "builtins.open",
        "builtins.getattr",
        "socket.socket",
        "importlib.import_module",
        "numpy.testing._private.utils.runstring",
    ],
)
def test_known_dangerous_callables(name: str) -> None:
    assert allowlist.is_dangerous(name)
    assert not allowlist.is_safe(name)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("numpy.core.multiarray._reconstruct", True),
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("sklearn.utils._testing.TempMemmap", False),
        ("sklearn.utils.validation.check_array", False),
        ("scipy.sparse._csr.csr_matrix", True),
        ("numpy.log1p", True),
        ("numpy.load", False),
    ],
)
def test_allow_list(name: str, safe: bool) -> None:
    assert allowlist.is_safe(name) is safe
