"""The one normaliser of the golden files: it removes what depends on the machine or the
moment (times, durations, paths, tool and library versions, digests, a float's last
digits), nothing else."""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# the libraries and tools whose versions show in the documents (model card, SARIF, page)
DISTRIBUTIONS = (
    "mlcd",
    "ruff",
    "bandit",
    "scikit-learn",
    "numpy",
    "pandas",
    "scipy",
    "skops",
    "joblib",
    "matplotlib",
    "threadpoolctl",
)
# JSON keys whose values are timings or moments
_VOLATILE_KEYS = frozenset(
    {
        "started",
        "duration_s",
        "seconds",
        "fit_seconds",
        "probe_seconds",
        "ready_seconds",
        "gzip_bytes",
        "age_days",
        "released",
        "time",
    }
)
FLOAT_DIGITS = 10
_PLACEHOLDER = re.compile(r"<([A-Z]+)>")
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<TIME>"),
    (re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?:[0-9a-f]{24})?(?![0-9a-f])"), "<SHA>"),
    # how long something took: "in 0.09s", "fit time: 0.0123 s", "(4.1 s)"
    (re.compile(r"(\b(?:in|time|took)[:|\s]+)\d+(\.\d+)? ?s\b"), r"\1<SECONDS>s"),
    (re.compile(r"\(\d+(\.\d+)? days old\)"), "(<AGE> days old)"),
    # a stage's time in the run's tables
    (re.compile(r"\| \d+(\.\d+)?s \|"), "| <SECONDS>s |"),
    (re.compile(r"/tmp/[\w.-]+"), "<TMP>"),
)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _replace_versions(text: str) -> str:
    for name, value in _versions().items():
        short = name.removeprefix("scikit-")
        for label in dict.fromkeys((name, short)):
            text = re.sub(
                rf"(?<![\w-]){re.escape(label)}(\"?[:=]? ?\"?| ){re.escape(value)}(?![\w.])",
                rf"{label}\g<1><VERSION>",
                text,
            )
    return text


def _scrub(value: Any, key: str = "") -> Any:
    if key in _VOLATILE_KEYS and value is not None:
        return "<VOLATILE>"
    if isinstance(value, dict):
        return {k: _scrub(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, float):
        # the last digits of a float depend on the machine's BLAS and CPU
        # (0.5049266425544771 here, ...776 there): compare 10 significant digits
        return float(f"{value:.{FLOAT_DIGITS}g}")
    return value


def normalise(
    text: str, roots: Mapping[str, Path], *, is_json: bool = False, markup: bool = False
) -> str:
    """`text` with the machine's traces replaced by placeholders; JSON is also re-indented
    with sorted keys and its timing fields blanked. `roots` maps placeholder names to the
    folders the text may name (the project, the run folder). In `markup` (HTML) the
    placeholders are written as character references, so that they stay text."""
    if is_json:
        data = _scrub(json.loads(text))
        # a SARIF driver's version is the installed tool's
        for run in data.get("runs", []) if isinstance(data, dict) else []:
            driver = run.get("tool", {}).get("driver", {})
            if "version" in driver:
                driver["version"] = "<VERSION>"
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    for name, root in sorted(roots.items(), key=lambda item: -len(str(item[1]))):
        # the address first: it contains the path
        for form in (root.resolve().as_uri(), str(root.resolve()), str(root)):
            text = text.replace(form, f"<{name}>")
    text = _replace_versions(text)
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    if markup:
        text = _PLACEHOLDER.sub(r"&lt;\1&gt;", text)
    return text
