"""`mlcd train`: load and check the data, split it (seeded), fit `build_model(**params)`, save.

Writes `train/model.skops` (skops), `train/model.json` (metadata, see docs/internals.md)
and `train/holdout.csv` (the held-out rows: features in model order, then the target).
With `--reuse`, a model registered earlier from the same data, code and params (same
fingerprint) is taken from the registry instead of being fitted again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mlcd import __version__, entrypoint, modelio, projectcode, tracking
from mlcd.context import Command, Context
from mlcd.contracts import HOLDOUT_FILE, META_FILE, MODEL_FILE, TrainDetails
from mlcd.errors import GateFailed, MlcdError, UserInputError
from mlcd.evidence import StageOutcome, StageResult, write_json_atomic
from mlcd.modelmeta import FeatureSpec, InputSpec, ModelMeta, ProjectModule
from mlcd.registry import open_registry
from mlcd.security import redact

STAGE = "train"
_LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas", "skops")


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "mlcd": __version__}
    for name in _LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def requirement_versions(ctx: Context) -> dict[str, str]:
    """The installed versions of what `model.requirements` names (part of the fingerprint
    and of the model card: the model was fitted with these)."""
    import re

    named = ctx.config.model.requirements
    if not named:
        return {}
    path = ctx.loaded.resolve(named)
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise UserInputError(
            f"model.requirements: {named} does not exist",
            hint="the path is relative to the config file's folder",
        ) from exc
    found = {}
    for raw in lines:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", raw.split("#", 1)[0])
        if match and not raw.lstrip().startswith("-"):
            name = match.group(1)
            try:
                found[name] = version(name)
            except PackageNotFoundError as exc:
                raise UserInputError(
                    f"model.requirements: {named} names `{name}`, which is not installed here",
                    hint="install the model's requirements where `mlcd train` runs "
                    f"(pip install -r {named})",
                ) from exc
    return found


def fingerprint(
    *, data_sha256: str, code_sha256: str, cfg: dict[str, Any], versions: dict[str, str]
) -> str:
    """The identity of a training run: same data, code, params and libraries → same model."""
    basis = {
        "data": data_sha256,
        "code": code_sha256,
        "model": cfg,
        "libraries": {k: v for k, v in versions.items() if k != "mlcd"},
    }
    text = json.dumps(basis, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _seed_estimator(estimator: Any, seed: int) -> list[str]:
    """Give every unset `random_state` in the estimator (and its steps) the seed."""
    params = estimator.get_params(deep=True)
    unset = sorted(k for k, v in params.items() if k.endswith("random_state") and v is None)
    if unset:
        estimator.set_params(**dict.fromkeys(unset, seed))
    return unset


def _fit(estimator: Any, features: Any, target: Any, text: str) -> float:
    clock = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(features, target)
    except Exception as exc:  # the user's estimator failed on the user's data
        raise UserInputError(
            f"model.entrypoint: fitting `{text}` on model.data raised {type(exc).__name__}: {exc}",
            hint="check that the pipeline handles every column type in the data "
            "(e.g. encode text columns)",
        ) from exc
    return round(time.perf_counter() - clock, 4)


@dataclass(frozen=True)
class _Data:
    """The training data, read and checked, split, and the run's fingerprint."""

    entry: Any
    frame: Any
    data_sha256: str
    versions: dict[str, str]
    fingerprint: str
    parts: Any
    features: list[str]


@dataclass(frozen=True)
class _Paths:
    model: Path
    meta: Path
    holdout: Path


def _read(ctx: Context) -> _Data:
    from mlcd import dataset  # pandas: only when training

    cfg = ctx.config.model
    root = ctx.loaded.root
    entry = entrypoint.parse(cfg.entrypoint, root)
    data_path = ctx.loaded.resolve(cfg.data)
    ctx.progress(f"reading {cfg.data}")
    frame = dataset.read_table(data_path)
    dataset.check_frame(frame, data_path, target=cfg.target, task=cfg.task)
    data_sha256 = modelio.file_sha256(data_path)
    versions = library_versions() | requirement_versions(ctx)
    fp = fingerprint(
        data_sha256=data_sha256,
        code_sha256=entrypoint.code_sha256(entry, root),
        cfg=cfg.model_dump(mode="json"),
        versions=versions,
    )
    parts = dataset.split(
        frame, target=cfg.target, task=cfg.task, test_size=cfg.test_size, seed=cfg.seed
    )
    features = [str(c) for c in frame.columns if c != cfg.target]
    return _Data(entry, frame, data_sha256, versions, fp, parts, features)


def _reused(ctx: Context, data: _Data, paths: _Paths) -> ModelMeta | None:
    """model.json of a model registered from the same fingerprint, its file copied; None
    when there is none."""
    registry = open_registry(ctx.loaded)
    earlier = registry.find_by_fingerprint(data.fingerprint)
    if earlier is None:
        return None
    ctx.progress(f"reusing {earlier.version} from {registry.location}")
    shutil.copyfile(registry.model_file(earlier.version, paths.model.parent), paths.model)
    paths.model.chmod(0o644)
    # a version registered by an earlier mlcd is read the old way and written in this schema
    meta = ModelMeta.from_dict(dict(earlier.metadata), f"{registry.location} {earlier.version}")
    return meta.with_changes(git_sha=ctx.inputs["git_sha"], reused_from=earlier.version)


def _fitted(ctx: Context, data: _Data, paths: _Paths) -> ModelMeta:
    """Fit the estimator, save it (its types checked), and model.json's content."""
    from mlcd import inputschema  # NumPy, pandas: only when training

    cfg = ctx.config.model
    root = ctx.loaded.root
    parts, features = data.parts, data.features
    estimator = entrypoint.build(data.entry, root, dict(cfg.params), cfg.task)
    seeded = _seed_estimator(estimator, cfg.seed)
    ctx.progress(f"fitting on {len(parts.train)} rows")
    x_train = parts.train[features]
    y_train = parts.train[cfg.target]
    fit_seconds = _fit(estimator, x_train, y_train, cfg.entrypoint)
    needed = modelio.save_model(estimator, paths.model)
    types = _check_types(needed, root, cfg.trusted_types)
    ship = projectcode.modules_to_ship(types, root, projectcode.loaded_modules(root))
    classes = getattr(estimator, "classes_", None)
    ctx.progress("probing the fitted model's inputs (format, gaps per column)")
    schema, input_meta = inputschema.describe(
        estimator,
        x_train,
        parts.holdout[features],
        task=cfg.task,
        name=ctx.config.project,
    )
    return ModelMeta(
        name=ctx.config.project,
        task=cfg.task,
        target=cfg.target,
        estimator=type(estimator).__name__,
        entrypoint=cfg.entrypoint,
        features=tuple(FeatureSpec.from_dict(f, META_FILE, i) for i, f in enumerate(schema)),
        input=InputSpec.from_dict(input_meta, META_FILE),
        classes=[_label(c) for c in classes] if classes is not None else None,
        params=_params(redact.redact_params(dict(cfg.params))),
        seeded_params=seeded,
        data=cfg.data,
        data_sha256=data.data_sha256,
        rows=len(data.frame),
        train_rows=len(parts.train),
        holdout_rows=len(parts.holdout),
        seed=cfg.seed,
        test_size=cfg.test_size,
        git_sha=ctx.inputs["git_sha"],
        versions=data.versions,
        fit_seconds=fit_seconds,
        fingerprint=data.fingerprint,
        trusted_types=needed,
        # why each needed type may be loaded (README, "The model"): the project's own
        # classes, those declared in model.trusted-types; the project files the image ships
        project_types=types.project,
        declared_types=types.declared,
        project_modules=tuple(ProjectModule.from_dict(m, META_FILE, i) for i, m in enumerate(ship)),
        model_sha256=modelio.file_sha256(paths.model),
    )


def _reasons(ctx: Context, data: _Data, meta: ModelMeta) -> list[str]:
    cfg = ctx.config.model
    reasons = [
        f"data {cfg.data}: {meta.rows} rows, sha256 {data.data_sha256[:12]}…",
        f"split seed {cfg.seed}: {meta.train_rows} train, {meta.holdout_rows} held out"
        + (" (stratified)" if cfg.task == "classification" else ""),
        f"fingerprint {data.fingerprint[:12]}…",
    ]
    if meta.classes:
        reasons.append(f"{len(meta.classes)} classes: {', '.join(map(str, meta.classes))}")
    own = list(meta.project_types or [])
    if own:
        reasons.append(
            f"project types (trusted: defined in the project's source): {', '.join(own)}"
        )
        reasons.append(f"project modules the image ships: {', '.join(meta.shipped_paths())}")
    if meta.declared_types:
        reasons.append("types trusted by model.trusted-types: " + ", ".join(meta.declared_types))
    return reasons


def _markdown(ctx: Context, data: _Data, meta: ModelMeta, summary: str) -> str:
    cfg = ctx.config.model
    reused = " (reused)" if meta.reused_from else ""
    md = [
        f"### ✅ train: {summary}",
        "",
        "| | |",
        "|---|---|",
        f"| estimator | `{meta.estimator}` from `{cfg.entrypoint}` |",
        f"| params | `{json.dumps(meta.params, sort_keys=True)}` |",
        f"| data | `{cfg.data}` ({meta.rows} rows, sha256 `{data.data_sha256[:12]}`) |",
        f"| split | {meta.train_rows} train, {meta.holdout_rows} held out, seed {cfg.seed} |",
        f"| fit time | {meta.fit_seconds or 0.0:.3f}s{reused} |",
        f"| fingerprint | `{data.fingerprint[:16]}` |",
    ]
    own = list(meta.project_types or [])
    if own or meta.declared_types:
        md.append(
            "| trusted types | "
            + ", ".join(f"`{t}`" for t in [*own, *(meta.declared_types or [])])
            + " |"
        )
    if shipped := meta.shipped_paths():
        md.append("| project code in the image | " + ", ".join(f"`{p}`" for p in shipped) + " |")
    return "\n".join(md) + "\n"


def _write(
    ctx: Context, data: _Data, paths: _Paths, meta: ModelMeta, reused_from: str | None
) -> StageOutcome:
    """model.json and the stage's record."""
    write_json_atomic(paths.meta, meta.to_dict())
    what = f"{meta.estimator} on {meta.train_rows} rows, {len(data.features)} features"
    if reused_from:
        summary = f"reused {reused_from} from the registry ({what}); no fit"
    else:
        summary = f"fitted {what} in {meta.fit_seconds or 0.0:.2f}s"
    return StageOutcome(
        status="pass",
        summary=summary,
        reasons=_reasons(ctx, data, meta),
        metrics={
            "rows": meta.rows or 0,
            "train_rows": meta.train_rows or 0,
            "holdout_rows": meta.holdout_rows or 0,
            "features": len(data.features),
        },
        artifacts={
            "model": ctx.bundle.relative(paths.model),
            "metadata": ctx.bundle.relative(paths.meta),
            "holdout": ctx.bundle.relative(paths.holdout),
        },
        details=TrainDetails(
            fingerprint=data.fingerprint,
            fit_seconds=meta.fit_seconds,
            reused_from=reused_from,
            model_sha256=meta.model_sha256 or "",
            project_types=list(meta.project_types or []),
            declared_types=list(meta.declared_types or []),
            project_modules=meta.shipped_paths(),
        ).dump(),
        markdown=_markdown(ctx, data, meta, summary),
    )


def _body(ctx: Context, *, reuse: bool) -> StageOutcome:
    """Read the data, then reuse a registered model of the same fingerprint or fit, write."""
    data = _read(ctx)
    folder = ctx.bundle.stage_dir(STAGE)
    paths = _Paths(folder / MODEL_FILE, folder / META_FILE, folder / HOLDOUT_FILE)
    cfg = ctx.config.model
    data.parts.holdout[[*data.features, cfg.target]].to_csv(paths.holdout, index=False)
    meta = _reused(ctx, data, paths) if reuse else None
    reused_from = meta.reused_from if meta is not None else None
    if meta is None:
        meta = _fitted(ctx, data, paths)
    outcome = _write(ctx, data, paths, meta, reused_from)
    tracking.log_stage(ctx, STAGE, outcome, meta=meta.to_dict(), files={"metadata": paths.meta})
    return outcome


def _check_types(needed: list[str], root: Path, declared: list[str]) -> projectcode.TypeReport:
    """Every type the fitted model needs must be mlcd's, the project's or declared."""
    types = projectcode.classify(needed, root, declared)
    if types.dangerous:
        raise GateFailed(
            f"the fitted model holds {len(types.dangerous)} callable(s) that can run code "
            "when a model file is loaded; no model may",
            problems=[f"dangerous type: {t}" for t in types.dangerous],
            hint="remove them from the pipeline (e.g. a FunctionTransformer of a builtin)",
        )
    if types.refused:
        packages = sorted({t.split(".")[0] for t in types.refused})
        raise GateFailed(
            f"the fitted model needs {len(types.refused)} type(s) that are neither "
            "scikit-learn's nor defined in the project's source, so evaluate and the server "
            "would refuse to load it",
            problems=[f"untrusted type: {t}" for t in types.refused],
            hint=f"if you trust {', '.join(packages)}, list the types in model.trusted-types "
            "in mlcd.yaml (and the package in model.requirements); a class of your own "
            "must live in a module under the config's folder, e.g. model/features.py",
        )
    return types


def _params(redacted: object) -> dict[str, Any]:
    """`redact_params` keeps the structure: a dict in, a dict out."""
    return dict(redacted) if isinstance(redacted, dict) else {}


def _label(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _redacted_errors(ctx: Context, *, reuse: bool) -> StageOutcome:
    """The body, with secrets from model.params masked in any error it raises (the
    message is printed and written into train/result.json)."""
    secrets = redact.secret_values(dict(ctx.config.model.params))
    try:
        return _body(ctx, reuse=reuse)
    except MlcdError as exc:
        if secrets:
            exc.message = redact.scrub(exc.message, secrets)
            exc.args = (exc.message,)
            exc.problems = [redact.scrub(p, secrets) for p in exc.problems]
            exc.hint = redact.scrub(exc.hint, secrets) if exc.hint else exc.hint
        raise


def stage(ctx: Context, *, reuse: bool | None = None) -> StageResult:
    if reuse is None:
        reuse = os.environ.get("MLCD_REUSE", "").lower() in ("1", "true", "yes")
    return ctx.run_stage(STAGE, lambda: _redacted_errors(ctx, reuse=reuse))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reuse",
        action="store_true",
        default=None,
        help="skip the fit when the registry holds a model with the same fingerprint "
        "(data, code, params, libraries); env MLCD_REUSE=1",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.conclude(stage(ctx, reuse=args.reuse))


COMMAND = Command(
    name="train",
    help="load and check the data, split it, fit build_model(**params), save the model",
    description="Read model.data (CSV or Parquet), check it, make a seeded split "
    "(stratified for classification), fit the estimator that model.entrypoint returns and "
    "save train/model.skops (skops), train/model.json (metadata) and train/holdout.csv.",
    example="mlcd train --config model/mlcd.yaml\nmlcd train --reuse   # skip the fit if the "
    "registry has this fingerprint",
    add_arguments=_arguments,
    run=_run,
)
