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
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from mlcd import __version__, entrypoint, projectcode, typedrows
from mlcd.context import Command, Context
from mlcd.contracts import META_FILE, MODEL_FILE, BuildDetails
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.evidence import StageOutcome, StageResult, write_json_atomic
from mlcd.image import contract, wheelhouse
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


def project_files(ctx: Context, meta: dict[str, Any]) -> list[tuple[Path, str]]:
    """The project's own modules the model needs (model.json's `project_modules`), as
    (file, path under /opt/project); exit 2 when one changed since train."""
    entries = meta.get("project_modules") or []
    if not isinstance(entries, list):
        raise UserInputError("train/model.json: `project_modules` must be a list")
    return projectcode.check_shipped(entries, ctx.loaded.root)


def needs_dataframe(meta: dict[str, Any]) -> bool:
    """model.json says the server builds a pandas DataFrame (docs/serving.md)."""
    declared = (meta.get("input") or {}).get("format")
    if declared is not None:
        return bool(declared == "dataframe")
    # model.json before `input`: the server takes a DataFrame when a column is a string
    return any(
        typedrows.feature_kind(f) in typedrows.STRING_KINDS for f in meta.get("features") or []
    )


def serving_pins(model_dir: Path) -> list[wheelhouse.Pin]:
    """The locked wheels the image needs: pandas' too when the model takes a DataFrame."""
    meta = json.loads((model_dir / "model.json").read_text("utf-8"))
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
        ) from None


def _created(root: Path, model_dir: Path) -> str:
    stamp = commit_time(root)
    if stamp:
        return stamp
    mtime = (model_dir / "model.skops").stat().st_mtime
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(ctx: Context, args: argparse.Namespace) -> StageOutcome:
    cfg = ctx.config
    root = ctx.loaded.root
    model_dir, holdout = train_files(ctx, by=STAGE)
    meta = json.loads((model_dir / "model.json").read_text("utf-8"))
    ctx.progress("checking the Docker engine")
    engine = docker.ping()
    base = args.base or cfg.image.base
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

    fingerprint = str(meta.get("fingerprint") or "")
    model_version = str(
        meta.get("version") or (f"0.0.0+{fingerprint[:12]}" if fingerprint else "0.0.0")
    )
    build_args = {
        "BASE_IMAGE": base,
        "MLCD_VERSION": __version__,
        "MLCD_REVISION": head_sha(root),
        "MLCD_CREATED": _created(root, model_dir),
        "MLCD_SOURCE": remote_url(root) or "unknown",
        "MODEL_NAME": str(meta.get("name") or cfg.project),
        "MODEL_VERSION": model_version,
        "MODEL_DATA_SHA256": str(meta.get("data_sha256") or "unknown"),
        "MODEL_METRICS_SHA256": _metrics_sha256(ctx),
    }
    ctx.progress(f"docker build --network none (base {base})")
    clock = time.monotonic()
    built = docker.build(folder, dockerfile=folder / "Dockerfile", build_args=build_args)
    build_seconds = round(time.monotonic() - clock, 1)
    name = cfg.image_name
    tag = f"{name}:build-{built.image_id.removeprefix('sha256:')[:12]}"
    docker.tag(built.image_id, tag)
    info = docker.inspect_image(built.image_id) or {}
    config = info.get("Config") or {}
    labels = dict(config.get("Labels") or {})
    size = int(info.get("Size") or 0)
    size_mb = round(size / 1e6, 1)
    image = tag  # resolvable on this engine (docker, trivy); the registry digest comes at release

    over = f" - over the {MAX_IMAGE_MB} MB goal" if size_mb >= MAX_IMAGE_MB else ""
    healthcheck = "yes" if config.get("Healthcheck") else "no"
    reasons = [
        f"image {tag} ({size_mb} MB{over})",
        (
            f"built in {build_seconds} s, {built.seconds_cached_steps}/{built.steps} steps "
            "from cache, network none"
        ),
        f"user {config.get('User') or 'root'}, healthcheck {healthcheck}",
    ]
    if context_info["model_wheels"]:
        reasons.append(
            "model.requirements added (pinned, hashed): " + ", ".join(context_info["model_wheels"])
        )
    if context_info["project_modules"]:
        reasons.append(
            "the project's own modules in /opt/project: "
            + ", ".join(context_info["project_modules"])
        )
    contract_details: dict[str, Any] = {"skipped": True}
    status = "pass"
    if args.skip_contract:
        reasons.append("contract test skipped (--skip-contract)")
    else:
        # the in-process side of the comparison imports the project's own modules too
        with entrypoint.project_path(root):
            outcome = contract.run_contract(
                built.image_id, model_dir, holdout, progress=ctx.progress
            )
        contract_details = {
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
            reasons.append(
                f"contract: {outcome.agree}/{outcome.rows} held-out predictions equal in "
                f"process in every form ({', '.join(outcome.forms)}); ready in "
                f"{outcome.ready_seconds} s; {outcome.health}"
            )
        else:
            status = "fail"
            reasons.append(f"contract test failed ({outcome.agree}/{outcome.rows} agree)")
            reasons += [f"contract: {p}" for p in outcome.problems]
    details = {
        "image": image,
        "image_id": built.image_id,
        "digest": f"{name}@{built.image_id}",
        "tag": tag,
        "name": name,
        "size_bytes": size,
        "size_mb": size_mb,
        "labels": labels,
        "user": config.get("User") or "",
        "base_image": base,
        "build_seconds": build_seconds,
        "cached_steps": built.seconds_cached_steps,
        "steps": built.steps,
        "docker_engine": engine,
        "model_version": model_version,
        "contract": contract_details,
        **context_info,
    }
    checked = BuildDetails.model_validate(details)  # the stage contract (mlcd.contracts)
    details = checked.dump()
    folder_out = ctx.bundle.stage_dir(STAGE)
    (folder_out / "build.log").write_text(built.log, "utf-8")
    write_json_atomic(folder_out / "image.json", details)
    verdict = ", contract passed" if status == "pass" else ", contract FAILED"
    summary = f"{tag} ({size_mb} MB)" + ("" if args.skip_contract else verdict)
    md = [f"### {'✅' if status == 'pass' else '❌'} build: {summary}", ""]
    md += ["| | |", "|---|---|"]
    md += [
        f"| image | `{image}` (`{built.image_id}`) |",
        f"| size | {size_mb} MB |",
        f"| base | `{base}` |",
        (
            f"| build | {build_seconds} s ({built.seconds_cached_steps}/{built.steps} cached), "
            "network none |"
        ),
        f"| user | `{checked.user}` |",
    ]
    md += ["", *[f"- {r}" for r in reasons]]
    return StageOutcome(
        status=status,  # type: ignore[arg-type]
        summary=summary,
        reasons=reasons,
        metrics={"image_mb": size_mb, "build_seconds": build_seconds},
        artifacts={
            "image": ctx.bundle.relative(folder_out / "image.json"),
            "log": ctx.bundle.relative(folder_out / "build.log"),
        },
        details=details,
        markdown="\n".join(md) + "\n",
    )


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
