"""Saving and loading models: skops only, with an explicit list of trusted types.

A model file is never unpickled. skops records every type the file needs; the types skops
does not trust by default must all be on `TRUSTED_TYPES` (or on the caller's extra list),
otherwise the file is refused with exit 1 and the unknown types are named. The server, the
scanner and `mlcd evaluate` all load through `load_model`.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlcd.errors import GateFailed, UserInputError

# Types outside skops's default trust that scikit-learn models commonly need. Each is a
# plain data holder of scikit-learn or NumPy (tree arrays, binners, distance metrics) and
# runs no code of the file's choosing when it is built.
TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    # mlcd's own fault-injection transformers for rollout drills (mlcd/rollout/faults.py)
    "mlcd.rollout.faults.FailSome",
    "mlcd.rollout.faults.SlowDown",
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.metrics._dist_metrics.EuclideanDistance",
    "sklearn.metrics._dist_metrics.EuclideanDistance32",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
    # a dict with attribute access: VotingClassifier's and StackingClassifier's
    # named_estimators_
    "sklearn.utils._bunch.Bunch",
)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_ID = re.compile(rb'("__id__": |"file": ")(\d{6,})')
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _reproducible(raw: bytes) -> bytes:
    """The same skops archive with stable bytes.

    skops names arrays and objects by `id()` (memory addresses, new in every process) and
    stamps the time on each zip entry. Renumbering the ids in order of appearance and fixing
    the timestamps makes the same model give the same file, hence the same sha256 (and the
    same image digest downstream).
    """
    import io

    source = zipfile.ZipFile(io.BytesIO(raw))
    schema = source.read("schema.json")
    numbers: dict[bytes, bytes] = {}
    for match in _ID.finditer(schema):
        numbers.setdefault(match.group(2), str(len(numbers) + 1).encode())

    def rename(match: re.Match[bytes]) -> bytes:
        return match.group(1) + numbers[match.group(2)]

    def new_name(name: str) -> str:
        stem, dot, ext = name.partition(".")
        return numbers.get(stem.encode(), stem.encode()).decode() + dot + ext

    target = io.BytesIO()
    with zipfile.ZipFile(target, "w") as out:
        for info in sorted(source.infolist(), key=lambda i: new_name(i.filename).zfill(40)):
            data = source.read(info)
            name = new_name(info.filename)
            if name == "schema.json":
                data = _ID.sub(rename, data)
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.compress_type = info.compress_type
            entry.external_attr = 0o644 << 16
            out.writestr(entry, data)
    return target.getvalue()


def save_model(model: Any, path: Path) -> list[str]:
    """Save a fitted estimator with skops; return the non-default types it needs to load.

    The file's bytes are made reproducible when both it and skops's own file load back to
    objects that serialise to the same stable bytes; otherwise skops's own bytes are kept.
    """
    import skops.io as sio

    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sio.dumps(model)
    data = raw
    try:
        stable = _reproducible(raw)
        needed = sio.get_untrusted_types(data=stable)
        again = _reproducible(sio.dumps(sio.loads(stable, trusted=needed)))
        if again == stable == _reproducible(sio.dumps(sio.loads(raw, trusted=needed))):
            data = stable
    except Exception:  # noqa: BLE001, S110 - keep skops's own bytes when anything differs
        pass
    path.write_bytes(data)
    return sorted(sio.get_untrusted_types(file=path))


def needed_types(path: Path) -> list[str]:
    """The types in a skops file that skops does not trust by default."""
    import skops.io as sio

    _check_file(path)
    try:
        return sorted(sio.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises many kinds on a damaged file
        raise GateFailed(
            f"{path}: not a readable skops model file ({type(exc).__name__}: {exc})",
            hint="models are saved by `mlcd train` with skops; pickle files are not accepted",
        ) from exc


def refused_types(path: Path, extra_trusted: Iterable[str] = ()) -> list[str]:
    """The types the file needs that are on no trusted list (empty: safe to load)."""
    allowed = set(TRUSTED_TYPES) | set(extra_trusted)
    return [t for t in needed_types(path) if t not in allowed]


def load_model(path: Path, extra_trusted: Iterable[str] = ()) -> Any:
    """Load a skops model file, refusing (exit 1) any type that is not trusted.

    A type the model scanner calls dangerous (`os.system`, `builtins.eval`, …) is refused
    even when a caller's list names it.
    """
    import skops.io as sio

    from mlcd.security import allowlist

    needed = needed_types(path)
    allowed = set(TRUSTED_TYPES) | set(extra_trusted)
    refused = [t for t in needed if t not in allowed or allowlist.is_dangerous(t)]
    if refused:
        raise GateFailed(
            f"{path}: the model file needs {len(refused)} untrusted type"
            f"{'s' if len(refused) != 1 else ''}; it was not loaded",
            problems=[
                f"{'dangerous' if allowlist.is_dangerous(t) else 'untrusted'} type: {t}"
                for t in refused
            ],
            hint="scikit-learn and NumPy types are trusted, and so are classes defined in "
            "the project's own source; declare any other estimator's types in "
            "model.trusted-types (see the README, 'The model: what mlcd delivers')",
        )
    try:
        return sio.load(path, trusted=needed)
    except Exception as exc:  # content that does not match its schema
        raise GateFailed(
            f"{path}: the skops model file could not be loaded ({type(exc).__name__}: {exc})"
        ) from exc


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise UserInputError(f"model file {path} does not exist")
