"""`mlcd build`: the serving image, built hermetically, then contract-tested.

1. The build context (`<out>/build/context/`): the Dockerfile, `model/` (model.skops and
   model.json from `mlcd train`), `wheels/` (the locked wheelhouse, verified by sha256,
   cached on the host, plus a wheel of mlcd itself).
2. `docker build --network none` (nothing is downloaded while building; an unchanged
   rebuild is all cache hits and yields the same image).
3. The contract test (`image/contract.py`): the container answers the held-out rows
   exactly as the model does in process, becomes healthy, and runs as a non-root user.

Writes `build/result.json` with `details.image` (the local tag `name:build-<id12>`),
`details.image_id` and `details.digest` (`name@sha256:<content digest>`), size, labels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from mlcd import __version__, entrypoint, projectcode
from mlcd.context import Command, Context
from mlcd.contracts import META_FILE, MODEL_FILE, BuildDetails
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.evidence import StageOutcome, StageResult, write_json_atomic
from mlcd.image import contract, wheelhouse
from mlcd.modelmeta import ModelMeta
from mlcd.tools import docker
from mlcd.tools.git import commit_time, head_sha, remote_url

STAGE = "build"
MAX_IMAGE_MB = 400
BASE_HINT = (
    "no image can be pulled here? make a local base: sudo bash scripts/setup/base-image.sh "
    "(local/python:3.11-bookworm) and set image.base in mlcd.yaml to it"
)


def train_files(ctx: Context, *, by: str) -> tuple[Path, Path]:
    """The model folder (model.skops + model.json) and holdout.csv that `mlcd train` wrote."""
    train = ctx.bundle.require("train", by=by)
    root = ctx.bundle.root

    def artifact(keys: tuple[str, ...], default: str) -> Path:
        for key in keys:
            if key in train.artifacts:
                path = Path(train.artifacts[key])
                return path if path.is_absolute() else root / path
        return root / default

    model = artifact(("model",), "train/model.skops")
    meta = artifact(("metadata", "model_json", "meta"), "train/model.json")
    holdout = artifact(("holdout",), "train/holdout.csv")
    for path in (model, meta, holdout):
        if not path.is_file():
            raise UserInputError(
                f"`mlcd {by}` needs {path}, which `mlcd train` should have written",
                hint="run `mlcd train` again with the same --out",
            )
    if meta.parent != model.parent:
        raise UserInputError(f"{model} and {meta} must be in the same folder")
    return model.parent, holdout


def _metrics_sha256(ctx: Context) -> str:
    evaluate = ctx.bundle.read("evaluate")
    if evaluate is None:
        return "none"
    canonical = json.dumps(evaluate.metrics, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _dockerfile(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise UserInputError(f"--dockerfile {explicit}: no such file")
        return path
    return Path(str(resources.files("mlcd").joinpath("data", "Dockerfile")))


def _copy_if_changed(source: Path, target: Path) -> None:
    if (
        target.is_file()
        and target.stat().st_size == source.stat().st_size
        and (target.read_bytes() == source.read_bytes())
    ):
        return
    shutil.copyfile(source, target)


def model_wheels(ctx: Context, cache: Path, lock: list[wheelhouse.Pin]) -> list[wheelhouse.Pin]:
    """The wheels `model.requirements` adds to the image (none without the key), resolved
    against `lock`, the server's own pins (pandas' too for a DataFrame model)."""
    named = ctx.config.model.requirements
    if not named:
        return []
    ctx.progress(f"resolving model.requirements ({named}) for the image")
    return wheelhouse.model_requirements(ctx.loaded.resolve(named), named, lock, cache)


def project_files(ctx: Context, meta: ModelMeta) -> list[tuple[Path, str]]:
    """The project's own modules the model needs (model.json's `project_modules`), as
    (file, path under /opt/project); exit 2 when one changed since train."""
    entries = [m.to_dict() for m in meta.project_modules or ()]
    return projectcode.check_shipped(entries, ctx.loaded.root)


def needs_dataframe(meta: ModelMeta) -> bool:
    """model.json says the server builds a pandas DataFrame (docs/serving.md)."""
    if meta.input_format is not None:
        return meta.input_format == "dataframe"
    # model.json before `input`: the server takes a DataFrame when a column is a string
    return meta.string_columns


def serving_pins(model_dir: Path) -> list[wheelhouse.Pin]:
    """The locked wheels the image needs: pandas' too when the model takes a DataFrame."""
    meta = ModelMeta.load(model_dir / META_FILE)
    return wheelhouse.serving_pins(dataframe=needs_dataframe(meta))


def prepare_context(
    folder: Path,
    model_dir: Path,
    dockerfile: Path,
    cache: Path,
    progress: Any,
    *,
    extra: list[wheelhouse.Pin] | None = None,
    project: list[tuple[Path, str]] | None = None,
) -> dict[str, Any]:
    """Fill the build context; files that did not change are left alone.

    `extra`: wheels the model needs besides the server's lock (model.requirements);
    `project`: the project's own modules, copied to `project/` (/opt/project in the image).
    """
    wheels = folder / "wheels"
    app = folder / "app"
    model = folder / "model"
    for sub in (wheels, app, model):
        sub.mkdir(parents=True, exist_ok=True)
    pins = serving_pins(model_dir)
    progress(f"wheelhouse: {len(pins)} locked wheels (cache {cache})")
    found = wheelhouse.ensure_wheels(pins, cache)
    added = _fill_model_wheels(folder / "model-wheels", pins, extra or [], cache)
    _fill_project(folder / "project", project or [])
    keep = {"requirements.txt"}
    for pin in pins:
        source = found[pin.sha256]
        keep.add(source.name)
        _copy_if_changed(source, wheels / source.name)
    (wheels / "requirements.txt").write_text(
        "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in pins), "utf-8"
    )
    for stale in wheels.iterdir():
        if stale.name not in keep:
            stale.unlink()
    own = wheelhouse.build_self_wheel(app)
    for stale in app.iterdir():
        if stale != own:
            stale.unlink()
    for name in (MODEL_FILE, META_FILE):
        _copy_if_changed(model_dir / name, model / name)
    for stale in model.iterdir():
        if stale.name not in (MODEL_FILE, META_FILE):
            stale.unlink()
    _copy_if_changed(dockerfile, folder / "Dockerfile")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {
        "wheels": len(pins) + len(added) + 1,
        "context_bytes": size,
        "model_wheels": [f"{p.name}=={p.version}" for p in added],
        "project_modules": sorted(rel for _, rel in project or []),
    }


def _fill_model_wheels(
    folder: Path, server: list[wheelhouse.Pin], extra: list[wheelhouse.Pin], cache: Path
) -> list[wheelhouse.Pin]:
    """`model-wheels/`: the wheels of model.requirements and their hashed requirements.txt
    (empty for most models). The image installs them in a layer of their own, after the
    server's, so that the server's dependency layer stays one cached layer for all models."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in server}
    added = [p for p in extra if p.name not in names]
    found = wheelhouse.ensure_wheels(added, cache) if added else {}
    keep = {"requirements.txt"}
    for pin in added:
        source = found[pin.sha256]
        keep.add(source.name)
        _copy_if_changed(source, folder / source.name)
    lines = "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in added)
    target = folder / "requirements.txt"
    if not target.is_file() or target.read_text("utf-8") != lines:
        target.write_text(lines, "utf-8")
    for stale in folder.iterdir():
        if stale.name not in keep:
            stale.unlink()
    return added


def _fill_project(code: Path, files: list[tuple[Path, str]]) -> None:
    code.mkdir(parents=True, exist_ok=True)
    wanted = {rel for _, rel in files}
    for source, rel in files:
        target = code / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_if_changed(source, target)
    for stale in sorted(code.rglob("*"), reverse=True):
        rel = stale.relative_to(code).as_posix()
        if stale.is_file() and rel not in wanted:
            stale.unlink()
        elif stale.is_dir() and not any(stale.iterdir()):
            stale.rmdir()


def _ensure_base(base: str) -> None:
    if docker.image_exists(base):
        return
    try:
        docker.pull(base, timeout=600)
    except EnvironmentMissing as exc:
        raise EnvironmentMissing(
            f"the base image {base} is not on this machine and cannot be pulled ({exc.message})",
            hint=BASE_HINT,
        ) from exc


def _created(root: Path, model_dir: Path) -> str:
    stamp = commit_time(root)
    if stamp:
        return stamp
    mtime = (model_dir / "model.skops").stat().st_mtime
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Prepared:
    """What the build needs, gathered and checked before `docker build` runs."""

    model_dir: Path
    holdout: Path
    meta: ModelMeta
    engine: str
    base: str
    folder: Path
    context_info: dict[str, Any]
    user_dockerfile: str | None  # --dockerfile as given (errors name it, not the copy)


@dataclass(frozen=True)
class _Built:
    """The image `docker build` made, as the engine describes it."""

    output: docker.BuildOutput
    seconds: float
    tag: str
    config: dict[str, Any]
    labels: dict[str, str]
    size: int
    model_version: str

    @property
    def size_mb(self) -> float:
        return round(self.size / 1e6, 1)


def _prepare(ctx: Context, args: argparse.Namespace) -> _Prepared:
    model_dir, holdout = train_files(ctx, by=STAGE)
    meta = ModelMeta.load(model_dir / META_FILE)
    ctx.progress("checking the Docker engine")
    engine = docker.ping()
    base = args.base or ctx.config.image.base
    _ensure_base(base)
    folder = ctx.bundle.stage_dir(STAGE) / "context"
    cache = Path(args.wheel_cache) if args.wheel_cache else wheelhouse.default_cache()
    context_info = prepare_context(
        folder,
        model_dir,
        _dockerfile(args.dockerfile),
        cache,
        ctx.progress,
        extra=model_wheels(ctx, cache, serving_pins(model_dir)),
        project=project_files(ctx, meta),
    )
    return _Prepared(model_dir, holdout, meta, engine, base, folder, context_info, args.dockerfile)


def _model_version(meta: ModelMeta) -> str:
    fingerprint = meta.fingerprint or ""
    return meta.version or (f"0.0.0+{fingerprint[:12]}" if fingerprint else "0.0.0")


def _build(ctx: Context, prep: _Prepared) -> _Built:
    root = ctx.loaded.root
    meta = prep.meta
    model_version = _model_version(meta)
    build_args = {
        "BASE_IMAGE": prep.base,
        "MLCD_VERSION": __version__,
        "MLCD_REVISION": head_sha(root),
        "MLCD_CREATED": _created(root, prep.model_dir),
        "MLCD_SOURCE": remote_url(root) or "unknown",
        "MODEL_NAME": meta.name or ctx.config.project,
        "MODEL_VERSION": model_version,
        "MODEL_DATA_SHA256": meta.data_sha256 or "unknown",
        "MODEL_METRICS_SHA256": _metrics_sha256(ctx),
    }
    ctx.progress(f"docker build --network none (base {prep.base})")
    clock = time.monotonic()
    built = docker.build(
        prep.folder,
        dockerfile=prep.folder / "Dockerfile",
        build_args=build_args,
        shown_as=prep.user_dockerfile,
    )
    seconds = round(time.monotonic() - clock, 1)
    tag = f"{ctx.config.image_name}:build-{built.image_id.removeprefix('sha256:')[:12]}"
    docker.tag(built.image_id, tag)
    info = docker.inspect_image(built.image_id) or {}
    config = info.get("Config") or {}
    labels = dict(config.get("Labels") or {})
    size = int(info.get("Size") or 0)
    return _Built(built, seconds, tag, config, labels, size, model_version)


def _contract(
    ctx: Context, args: argparse.Namespace, prep: _Prepared, built: _Built
) -> tuple[str, dict[str, Any], list[str]]:
    """The contract test's status, details and reasons (skipped with --skip-contract)."""
    if args.skip_contract:
        return "pass", {"skipped": True}, ["contract test skipped (--skip-contract)"]
    # the in-process side of the comparison imports the project's own modules too
    with entrypoint.project_path(ctx.loaded.root):
        outcome = contract.run_contract(
            built.output.image_id, prep.model_dir, prep.holdout, progress=ctx.progress
        )
    return _contract_verdict(outcome)


def _contract_verdict(
    outcome: contract.ContractResult,
) -> tuple[str, dict[str, Any], list[str]]:
    """A finished contract test's status, details and reasons (no I/O: the golden files
    render the build's summary from fixed outcomes)."""
    details = {
        "skipped": False,
        "passed": outcome.passed,
        "rows": outcome.rows,
        "agree": outcome.agree,
        "ready_seconds": outcome.ready_seconds,
        "health": outcome.health,
        "user": outcome.user,
        "problems": outcome.problems,
        "forms": outcome.forms,
    }
    if outcome.passed:
        passed = (
            f"contract: {outcome.agree}/{outcome.rows} held-out predictions equal in "
            f"process in every form ({', '.join(outcome.forms)}); ready in "
            f"{outcome.ready_seconds} s; {outcome.health}"
        )
        return "pass", details, [passed]
    reasons = [f"contract test failed ({outcome.agree}/{outcome.rows} agree)"]
    return "fail", details, reasons + [f"contract: {p}" for p in outcome.problems]


def _image_reasons(prep: _Prepared, built: _Built) -> list[str]:
    size_mb = built.size_mb
    over = f" - over the {MAX_IMAGE_MB} MB goal" if size_mb >= MAX_IMAGE_MB else ""
    healthcheck = "yes" if built.config.get("Healthcheck") else "no"
    out = built.output
    reasons = [
        f"image {built.tag} ({size_mb} MB{over})",
        (
            f"built in {built.seconds} s, {out.seconds_cached_steps}/{out.steps} steps "
            "from cache, network none"
        ),
        f"user {built.config.get('User') or 'root'}, healthcheck {healthcheck}",
    ]
    info = prep.context_info
    if info["model_wheels"]:
        reasons.append(
            "model.requirements added (pinned, hashed): " + ", ".join(info["model_wheels"])
        )
    if info["project_modules"]:
        reasons.append(
            "the project's own modules in /opt/project: " + ", ".join(info["project_modules"])
        )
    return reasons


def _markdown(status: str, summary: str, prep: _Prepared, built: _Built, reasons: list[str]) -> str:
    out = built.output
    md = [f"### {'✅' if status == 'pass' else '❌'} build: {summary}", ""]
    md += ["| | |", "|---|---|"]
    md += [
        f"| image | `{built.tag}` (`{out.image_id}`) |",
        f"| size | {built.size_mb} MB |",
        f"| base | `{prep.base}` |",
        (
            f"| build | {built.seconds} s ({out.seconds_cached_steps}/{out.steps} cached), "
            "network none |"
        ),
        f"| user | `{built.config.get('User') or ''}` |",
    ]
    md += ["", *[f"- {r}" for r in reasons]]
    return "\n".join(md) + "\n"


def _write(
    ctx: Context,
    args: argparse.Namespace,
    prep: _Prepared,
    built: _Built,
    contract_result: tuple[str, dict[str, Any], list[str]],
) -> StageOutcome:
    """build.log, image.json and the stage's record."""
    status, contract_details, contract_reasons = contract_result
    reasons = _image_reasons(prep, built) + contract_reasons
    name = ctx.config.image_name
    image_id = built.output.image_id
    details = {
        "image": built.tag,  # resolvable on this engine (docker, trivy); the digest: release
        "image_id": image_id,
        "digest": f"{name}@{image_id}",
        "tag": built.tag,
        "name": name,
        "size_bytes": built.size,
        "size_mb": built.size_mb,
        "labels": built.labels,
        "user": built.config.get("User") or "",
        "base_image": prep.base,
        "build_seconds": built.seconds,
        "cached_steps": built.output.seconds_cached_steps,
        "steps": built.output.steps,
        "docker_engine": prep.engine,
        "model_version": built.model_version,
        "contract": contract_details,
        **prep.context_info,
    }
    details = BuildDetails.model_validate(details).dump()  # the stage contract (mlcd.contracts)
    folder_out = ctx.bundle.stage_dir(STAGE)
    (folder_out / "build.log").write_text(built.output.log, "utf-8")
    write_json_atomic(folder_out / "image.json", details)
    verdict = ", contract passed" if status == "pass" else ", contract FAILED"
    summary = f"{built.tag} ({built.size_mb} MB)" + ("" if args.skip_contract else verdict)
    return StageOutcome(
        status=status,  # type: ignore[arg-type]
        summary=summary,
        reasons=reasons,
        metrics={"image_mb": built.size_mb, "build_seconds": built.seconds},
        artifacts={
            "image": ctx.bundle.relative(folder_out / "image.json"),
            "log": ctx.bundle.relative(folder_out / "build.log"),
        },
        details=details,
        markdown=_markdown(status, summary, prep, built, reasons),
    )


def _body(ctx: Context, args: argparse.Namespace) -> StageOutcome:
    """Prepare the context, build, run the contract test, write."""
    prep = _prepare(ctx, args)
    built = _build(ctx, prep)
    return _write(ctx, args, prep, built, _contract(ctx, args, prep, built))


def stage(ctx: Context, args: argparse.Namespace | None = None) -> StageResult:
    options = args or argparse.Namespace(
        base=None,
        dockerfile=None,
        wheel_cache=None,
        skip_contract=os.environ.get("MLCD_SKIP_CONTRACT") == "1",
    )
    return ctx.run_stage(STAGE, lambda: _body(ctx, options))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default=None, help="base image (default: image.base)")
    parser.add_argument(
        "--dockerfile", default=None, help="another Dockerfile (default: mlcd's own)"
    )
    parser.add_argument(
        "--wheel-cache",
        default=None,
        help="where downloaded wheels are kept (default: $MLCD_CACHE/wheels or "
        "~/.cache/mlcd/wheels)",
    )
    parser.add_argument(
        "--skip-contract",
        action="store_true",
        help="do not start the image to compare its predictions (not for releases)",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.conclude(stage(ctx, args))


COMMAND = Command(
    name="build",
    help="builds the serving image hermetically; outputs name@sha256:digest",
    description="Prepare the build context (model, metadata, the locked wheelhouse), build "
    "the serving image with --network none, then run the contract test: the container must "
    "become ready and healthy, run as a non-root user and answer the held-out rows exactly "
    "as the model does in process. Writes build/result.json (image digest, tag, size, "
    "labels). Fails (exit 1) when the contract test fails.",
    example="mlcd build --config model/mlcd.yaml\nmlcd build --format json | jq -r .details.image",
    add_arguments=_arguments,
    run=_run,
)
