"""`mlcd report`: every stage of a run as one Markdown document (PR comment, job summary)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlcd import runreport
from mlcd.context import Command, Context
from mlcd.errors import MlcdError
from mlcd.evidence import Bundle, require_writable, status_icon

MARKER = "<!-- mlcd-report -->"


def render_markdown(bundle: Bundle, *, title: str = "mlcd report") -> str:
    """The report: an overview table, then each stage's own summary."""
    results = bundle.stages()
    lines = [MARKER, f"## {title}", ""]
    if not results:
        lines.append(f"No stage results in `{bundle.root}` yet.")
        return "\n".join(lines) + "\n"
    lines += ["| stage | outcome | time | summary |", "|---|---|---:|---|"]
    for r in results:
        summary = " ".join(r.summary.split()).replace("|", "\\|")
        lines.append(
            f"| {r.stage} | {status_icon(r.status)} {r.status} | {r.duration_s:.1f}s | {summary} |"
        )
    for r in results:
        body = bundle.summary_markdown(r.stage).strip()
        if body:
            lines += ["", body]
    return "\n".join(lines) + "\n"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", type=Path, default=None, help="write the report to this file too"
    )
    parser.add_argument("--title", default="mlcd report", help="the report's heading")
    parser.add_argument(
        "--html",
        action="store_true",
        help="write the one-page HTML report <out>/report.html (and --output) instead of "
        "printing Markdown",
    )


def planned_stages(ctx: Context) -> list[str] | None:
    """The stages `mlcd run` would run with this config, or None without a usable config."""
    from mlcd import pipeline

    if not ctx.config_path.is_file():
        return None
    try:
        return [step.name for step in pipeline.steps(ctx)]
    except MlcdError:
        return None


def _html(ctx: Context, args: argparse.Namespace) -> int:
    path = runreport.write_html(ctx.out, planned_stages(ctx))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(path.read_bytes())
        path = args.output
    print(f"report: {path}", file=ctx.stream)
    return 0


def _run(ctx: Context, args: argparse.Namespace) -> int:
    # both forms write into the run folder: find out first that they can
    require_writable(ctx.out)
    if args.output is not None:
        require_writable(args.output.parent, "the folder of --output")
    if args.html:
        return _html(ctx, args)
    text = render_markdown(ctx.bundle, title=args.title)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, "utf-8")
    (ctx.out / "report.md").parent.mkdir(parents=True, exist_ok=True)
    (ctx.out / "report.md").write_text(text, "utf-8")
    print(text, end="", file=ctx.stream)
    return 0


COMMAND = Command(
    name="report",
    help="render the evidence of a run as Markdown",
    description="Render every stage result in the run folder (--out) as one Markdown "
    "document: an overview table, then each stage's summary. Also written to <out>/report.md. "
    "With --html, write <out>/report.html instead: one self-contained page with the verdict, "
    "the stages, the model's metrics and plots against the champion, the scan, the image and "
    "the rollout timeline of each environment (`mlcd run` writes it at its end).",
    example='mlcd report --out .mlcd > comment.md\nmlcd report -o "$GITHUB_STEP_SUMMARY"\n'
    "mlcd report --html --out .mlcd",
    add_arguments=_arguments,
    run=_run,
)
