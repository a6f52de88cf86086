"""`mlcd evaluate`: the evaluation gate; this module is its I/O (the work is in
`mlcd.evaluation`: pure checks and rendering, plots, registration).

On the held-out rows of `mlcd train`: the task's metrics with bootstrap intervals, per-slice
metrics, thresholds (also per slice), and a paired-bootstrap comparison with the registry's
`champion` on the same rows. Always writes `evaluate/verdict.json` (one entry per check),
`summary.md` (table + Mermaid chart), `report.html` (matplotlib plots) and `model_card.md`,
then registers the candidate in the model registry (unless `--no-register`).

NumPy, pandas and matplotlib load only when the stage runs (`mlcd --help` loads none).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd import projectcode, tracking
from mlcd.context import Command, Context
from mlcd.contracts import META_FILE, MODEL_FILE, VERDICT_FILE, train_files
from mlcd.errors import UserInputError
from mlcd.evaluation.registration import register_candidate
from mlcd.evidence import StageOutcome, StageResult, write_json_atomic
from mlcd.modelmeta import ModelMeta
from mlcd.registry import CHAMPION, ModelRegistry, ModelVersion, open_registry

if TYPE_CHECKING:
    import pandas as pd

    from mlcd.evaluation.scoring import ChampionScore, Scored
    from mlcd.evaluation.verdict import Verdict

STAGE = "evaluate"


def _load_train(ctx: Context) -> tuple[ModelMeta, Path, pd.DataFrame]:
    from mlcd import dataset

    ctx.bundle.require("train", by=STAGE)
    files = train_files(ctx.bundle)
    model_path, meta_path, holdout_path = files.model, files.meta, files.holdout
    if not meta_path.is_file() or not model_path.is_file():
        raise UserInputError(
            f"{ctx.bundle.root / 'train'} lacks {MODEL_FILE} or {META_FILE}",
            hint="run `mlcd train` first, with the same --out",
        )
    spec = ModelMeta.load(meta_path)
    if not spec.target:
        raise UserInputError(f"{meta_path}: `target` is missing", hint="re-run `mlcd train`")
    frame = dataset.read_holdout(holdout_path, spec.feature_dicts(), spec.target)
    return spec, model_path, frame


def _score_champion(
    ctx: Context,
    *,
    registry: ModelRegistry,
    champion: ModelVersion,
    frame: pd.DataFrame,
    spec: ModelMeta,
    workdir: Path,
) -> tuple[Scored | None, str]:
    from mlcd.evaluation.scoring import score

    try:
        cspec = ModelMeta.from_dict(dict(champion.metadata), f"champion {champion.version}")
    except UserInputError as exc:
        return None, exc.message
    if cspec.task != spec.task:
        return None, f"champion {champion.version} is a {cspec.task} model"
    names = cspec.feature_names
    missing = [n for n in names if n not in frame.columns]
    if missing:
        return None, (
            f"champion {champion.version} needs feature(s) the candidate's holdout lacks: "
            f"{', '.join(missing[:5])}"
        )
    if spec.task == "classification" and [str(c) for c in cspec.classes or []] != [
        str(c) for c in spec.classes or []
    ]:
        return None, (
            f"champion {champion.version} has classes {cspec.classes}, the candidate {spec.classes}"
        )
    model = projectcode.load_project_model(
        registry.model_file(champion.version, workdir),
        ctx.loaded.root,
        list(ctx.config.model.trusted_types),
    )
    target = str(spec.target)
    return score(model, frame[names], frame[target], spec.to_dict()), ""


def _champion(
    ctx: Context, registry: ModelRegistry | None, frame: pd.DataFrame, spec: ModelMeta
) -> ChampionScore:
    """The registry's champion scored on the candidate's held-out rows, or why not."""
    from mlcd import metrics as m
    from mlcd.evaluation.scoring import ChampionScore

    if ctx.config.evaluate.compare_to == "none" or registry is None:
        return ChampionScore(
            "off", "comparison with the champion is off (evaluate.compare-to: none)"
        )
    champion = registry.alias(CHAMPION)
    if champion is None:
        return ChampionScore(
            "none",
            f"no champion yet in the registry ({registry.location}): nothing to compare with, "
            "so the comparison passes",
        )
    ctx.progress(f"scoring champion {champion.version}")
    with tempfile.TemporaryDirectory(prefix="mlcd-champion-") as workdir:
        scored, why = _score_champion(
            ctx, registry=registry, champion=champion, frame=frame, spec=spec, workdir=Path(workdir)
        )
    if scored is None:
        return ChampionScore(
            "not-comparable", f"{why}: not comparable, so the comparison passes", champion
        )
    return ChampionScore(
        "compared",
        f"compared with champion {champion.version} on the same {len(frame)} held-out rows",
        champion,
        m.compute(scored.predictions),
        scored=scored,
    )


def _write_documents(
    folder: Path,
    meta: dict[str, Any],
    verdict: Verdict,
    candidate: Scored,
    champion: ChampionScore,
) -> dict[str, Path]:
    """Write the plots, summary.md, report.html and model_card.md; return them by name."""
    from mlcd.evaluation import plots, render

    version = champion.champion.version if champion.champion else None
    if meta["task"] == "classification":
        pngs = plots.classification_plots(folder, meta, candidate, champion.scored, version)
    else:
        pngs = plots.regression_plots(folder, candidate, champion.scored, version)
    doc = verdict.to_json()
    summary = folder / "summary.md"
    summary.write_text(render.summary_markdown(meta, doc), "utf-8")
    report = folder / "report.html"
    images = {name: path.read_bytes() for name, path in pngs.items()}
    report.write_text(render.report_html(meta, doc, images), "utf-8")
    card = folder / "model_card.md"
    card.write_text(render.model_card(meta, doc), "utf-8")
    out = {"summary": summary, "report": report, "model_card": card}
    out |= {f"plot_{k}": v for k, v in pngs.items()}
    return out


def _outcome(
    ctx: Context, verdict: Verdict, files: dict[str, Path], registered: dict[str, Any]
) -> StageOutcome:
    doc = verdict.to_json()
    artifacts = {k: ctx.bundle.relative(v) for k, v in files.items()}
    return StageOutcome(
        status="pass" if verdict.passed else "fail",
        summary=verdict.summary,
        reasons=[("✓ " if c.passed else "✗ ") + c.line for c in verdict.checks],
        metrics=verdict.metrics,
        artifacts=artifacts,
        details={
            "intervals": doc["intervals"],
            "comparison": doc["comparison"],
            "registry": registered,
            "slices": doc["slices"],
        },
        markdown=files["summary"].read_text("utf-8"),
    )


def _body(ctx: Context, *, register: bool) -> StageOutcome:
    from mlcd import metrics as m
    from mlcd.evaluation import checks, shift
    from mlcd.evaluation.scoring import score

    cfg = ctx.config.evaluate
    spec, model_path, frame = _load_train(ctx)
    # the evaluation's modules take the checked file as a dict (every feature with its kind)
    meta = spec.to_dict()
    task = spec.task
    checks.check_names(cfg, task, ctx.loaded.path)
    folder = ctx.bundle.stage_dir(STAGE)

    ctx.progress("loading the model")
    model = projectcode.load_project_model(
        model_path, ctx.loaded.root, ctx.config.model.trusted_types
    )
    checks.check_probability_metrics(ctx.loaded, model, task)
    candidate = score(model, frame[spec.feature_names], frame[str(spec.target)], meta)
    registry = open_registry(ctx.loaded) if (register or cfg.compare_to == "champion") else None
    champion = _champion(ctx, registry, frame, spec)
    boot = m.bootstrap(
        candidate.predictions,
        champion.scored.predictions if champion.scored else None,
        samples=cfg.bootstrap_samples,
        confidence=cfg.confidence,
        seed=spec.seed or 0,
        progress=ctx.progress,
    )
    verdict = checks.judge(
        cfg=cfg,
        meta=meta,
        frame=frame,
        candidate=candidate,
        champion=champion,
        boot=boot,
        config_path=ctx.loaded.path,
    )
    ctx.progress("writing the report")
    reports = _write_documents(folder, meta, verdict, candidate, champion)
    # how far the candidate's predictions move from the champion's on these rows: the
    # change deploy's judge is to expect (evaluation/shift.py)
    # (classifiers: the judge compares regression predictions as a histogram only)
    verdict_doc = verdict.to_json()
    if task == "classification":
        verdict_doc["prediction_shift"] = shift.jsonable(
            shift.prediction_shift(
                candidate,
                champion.scored,
                champion.champion.version if champion.champion else None,
            )
        )
    write_json_atomic(folder / VERDICT_FILE, verdict_doc)
    registered: dict[str, Any] = {"registered": False, "version": None}
    if register and registry is not None:
        registered = register_candidate(
            registry=registry,
            model_path=model_path,
            meta=meta,
            metrics=verdict.metrics,
            verdict=verdict_doc,
            folder=folder,
        )
    outcome = _outcome(ctx, verdict, {"verdict": folder / VERDICT_FILE, **reports}, registered)
    tracking.log_stage(
        ctx,
        STAGE,
        outcome,
        meta=meta,
        files={k: reports[k] for k in ("report", "model_card")}
        | {"verdict": folder / VERDICT_FILE},
        extra_metrics=tracking.interval_metrics(verdict.to_json()["intervals"]),
    )
    return outcome


def stage(ctx: Context, *, register: bool = True) -> StageResult:
    return ctx.run_stage(STAGE, lambda: _body(ctx, register=register))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-register",
        action="store_true",
        help="do not add the candidate to the model registry",
    )


def _run(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.conclude(stage(ctx, register=not args.no_register))


COMMAND = Command(
    name="evaluate",
    help="metrics, thresholds and comparison with the champion; writes a verdict",
    description="Score the model from `mlcd train` on its held-out rows: metrics with "
    "bootstrap intervals, slices, thresholds, and a paired comparison with the registry's "
    "champion. Writes evaluate/verdict.json, summary.md (with a Mermaid chart), report.html "
    "and model_card.md, and registers the candidate. Exit 1 when a check fails.",
    example="mlcd evaluate --config model/mlcd.yaml\nmlcd evaluate --format json | jq .metrics",
    add_arguments=_arguments,
    run=_run,
)
