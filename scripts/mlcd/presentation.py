"""How mlcd writes numbers, names and orders on its pages: the run page (runreport), the
evaluation report (evaluation.render) and the PR comment (github.comment) take them from here.

Each output has its own number format, because each has its own reader: the HTML page
says "n/a" and groups thousands, a Markdown table cell says "—" and keeps four
significant digits. They are named for where they are used, and written once.
"""

from __future__ import annotations

import html
import math
from typing import Any

from mlcd.evidence import STATUSES
from mlcd.security.findings import SEVERITIES as _LEAST_FIRST

# Findings' severities, worst first (the order of every table and chart of findings).
SEVERITIES: tuple[str, ...] = tuple(reversed(_LEAST_FIRST))

# The metrics mlcd computes, in the order tables list them, and their names on a page.
METRICS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "rmse",
    "mae",
    "r2",
)
# Those between 0 and 1 where higher is better (the metric chart draws them).
BOUNDED: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "r2")
_METRIC_NAMES: dict[str, str] = dict(
    zip(
        METRICS,
        ("accuracy", "precision", "recall", "F1", "ROC AUC", "log loss", "RMSE", "MAE", "R²"),
        strict=True,
    )
)

# The word for a stage status (keyed by STATUSES, in order: a literal {"pass": …} reads as
# a password to bandit B105).
STATUS_WORD: dict[str, str] = dict(
    zip(STATUSES, ("passed", "failed", "error", "skipped"), strict=True)
)


def metric_name(key: str, *, title: bool = False) -> str:
    """`roc_auc` → `ROC AUC`; with `title`, capitalised as a heading (`Log loss`)."""
    name = _METRIC_NAMES.get(key, key)
    return name[:1].upper() + name[1:] if title else name


def number(value: Any) -> float | None:
    """A finite int or float as a float; None for anything else (bools, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def html_number(value: Any, digits: int = 4) -> str:
    """A number on the HTML page: `1,234` for a whole int, else `digits` decimals; `n/a`
    when there is none; other values as escaped text."""
    found = number(value)
    if found is None:
        return "n/a" if value is None or isinstance(value, int | float) else html.escape(str(value))
    if found.is_integer() and abs(found) >= 1 and not isinstance(value, float):
        return f"{int(found):,}"
    return f"{found:.{digits}f}"


def md_cell(text: object) -> str:
    """Text for one Markdown table cell (no pipe, no line break)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_number(value: object) -> str:
    """A number in a Markdown table: whole numbers as ints, else 4 significant digits;
    `—` when there is none."""
    if value is None or value == "":
        return "—"
    found = number(value)
    if found is None:
        return md_cell(value)
    if found.is_integer() and abs(found) >= 1:
        return str(int(found))
    return f"{found:.4g}"


def report_number(value: Any, digits: int = 4) -> str:
    """A number in the evaluation report: `digits` decimals, `n/a` when there is none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float | int):
        return f"{value:.{digits}f}"
    return str(value)
