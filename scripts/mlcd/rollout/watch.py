"""`mlcd judge`: mlcd's judge against Prometheus, for the Kubernetes target.

The AnalysisTemplate mlcd renders for a Kubernetes environment runs this as an Argo Rollouts
Job metric at every canary step (and before a blue/green promotion), in the release's own
image: ``python -m mlcd.rollout.watch --prometheus URL --canary SELECTOR --stable SELECTOR
…`` (``mlcd judge`` with the same arguments where mlcd is installed). Every interval it reads
both arms' counters from Prometheus (summed over their pods), takes the differences, and
asks the same `judge` and `step_decision` the local target uses, so the same guarantees hold:
exit 0 when the step passes (the tolerances shown), 1 when the analysis fails or stays
inconclusive up to max-intervals (Argo then aborts the rollout and stable keeps serving; the
Job's log says why), 2 for bad arguments. One JSON line per interval goes to stdout.

Standard library only (with `mlcd.rollout.judge` and `mlcd.rollout.metrics`), so it runs in
the serving image, which has mlcd's runtime but not its configuration libraries.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any

from mlcd.errors import MlcdError, UserInputError
from mlcd.rollout.judge import (
    AnalysisRun,
    JudgeState,
    Limits,
    StepAction,
    StepPolicy,
    StepProgress,
    judge,
    step_decision,
)
from mlcd.rollout.metrics import MetricsError, Sample, Snapshot, snapshot, window
from mlcd.tools import prometheus

METRIC_NAMES = (
    "mlcd_requests_total",
    "mlcd_request_duration_seconds_bucket",
    "mlcd_predictions_total",
    "mlcd_prediction_score_bucket",
    "process_start_time_seconds",
)
_SELECTOR = re.compile(r'^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*$')
Query = Callable[[str, str], Sequence[prometheus.Series]]


def arm_query(selector: str) -> str:
    """One instant query for every series of an arm the judge reads."""
    return f'{{__name__=~"{"|".join(METRIC_NAMES)}",{selector}}}'


class PrometheusArm:
    """Reads one arm's counters, summed over its pods, from Prometheus."""

    def __init__(self, address: str, selector: str, query: Query | None = None) -> None:
        self.address = address
        self.selector = selector
        self._query: Query = query or prometheus.query

    def read(self) -> Snapshot:
        try:
            series = self._query(self.address, arm_query(self.selector))
        except prometheus.QueryError as exc:
            raise MetricsError(str(exc)) from exc
        return snapshot(Sample(labels.get("__name__", ""), labels, v) for labels, v in series)


def analyse(
    stable: PrometheusArm,
    canary: PrometheusArm,
    *,
    limits: Limits,
    policy: StepPolicy,
    run: AnalysisRun,
    interval: float,
    emit: Callable[[dict[str, Any]], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[StepAction, str]:
    """The step's analysis loop, as the rollout controller runs it (mlcd/rollout/controller.py)."""
    progress = StepProgress()
    state = JudgeState()
    before: tuple[Snapshot, Snapshot] | None = None
    started = clock()
    while True:
        if before is None:
            try:
                before = (stable.read(), canary.read())
            except MetricsError as exc:
                emit({"outcome": "waiting", "reasons": [f"cannot read metrics yet: {exc}"]})
        sleep(interval)
        try:
            base, after = _read_after(before, stable, canary)
            try:
                windows = (window(base[0], after[0]), window(base[1], after[1]))
            finally:
                before = after  # after a restart, the new counters are the baseline
        except MetricsError as exc:
            run = run.record("error")
            progress = progress.record("error", [str(exc)])
            emit({"outcome": "error", "reasons": [str(exc)]})
            if "no baseline" in str(exc) or "GET " in str(exc):
                before = None
        else:
            state, m = judge(state, windows[0], windows[1], limits)
            run = run.record(m.verdict)
            progress = progress.record(m.verdict, m.reasons)
            emit({"outcome": m.verdict, "reasons": list(m.reasons[:8]), "metrics": dict(m.metrics)})
        action, why = step_decision(policy, progress, run, clock() - started)
        if action != "continue":
            return action, why


def _read_after(
    before: tuple[Snapshot, Snapshot] | None, stable: PrometheusArm, canary: PrometheusArm
) -> tuple[tuple[Snapshot, Snapshot], tuple[Snapshot, Snapshot]]:
    if before is None:
        raise MetricsError("no baseline reading of the arms' metrics")
    return before, (stable.read(), canary.read())


# --------------------------------------------------------------------------------------
# Arguments


_LIMIT_KEYS: Mapping[str, str] = {
    "max-error-rate": "max_error_rate",
    "max-p99-latency-ms": "max_p99_latency_ms",
    "max-prediction-shift": "max_prediction_shift",
    "max-latency-increase": "max_latency_increase",
    "min-latency-increase-ms": "min_latency_increase_ms",
    "max-error-rate-increase": "max_error_rate_increase",
    "alpha": "alpha",
    "latency-ok-ms": "latency_ok_ms",
}
_RUN_KEYS = ("failure-limit", "inconclusive-limit", "consecutive-error-limit")
# as in mlcd.yaml's analysis section (docs/configuration.md)
_RUN_DEFAULTS: Mapping[str, int | None] = {
    "failure-limit": 0,
    "inconclusive-limit": None,
    "consecutive-error-limit": 4,
}


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise UserInputError(f"--interval {text!r} is not a duration such as 30s, 500ms or 2m")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * scale


def limits_from(text: str, min_requests: int) -> tuple[Limits, AnalysisRun]:
    """The judge's limits and the analysis run from `--analysis` (the analysis section as JSON,
    kebab-case keys as in mlcd.yaml)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError as exc:
        raise UserInputError(f"--analysis is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UserInputError("--analysis must be a JSON object of analysis keys")
    known = {*_LIMIT_KEYS, *_RUN_KEYS, "quantiles", "max-intervals"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserInputError(f"--analysis: unknown key(s) {', '.join(unknown)}")
    limits = Limits(min_requests=min_requests)
    changes: dict[str, Any] = {}
    for key, name in _LIMIT_KEYS.items():
        if key in data and data[key] is not None:
            value = data[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise UserInputError(f"--analysis: {key} must be a number ≥ 0, not {value!r}")
            changes[name] = float(value)
    if "quantiles" in data:
        changes["quantiles"] = _quantiles(data["quantiles"])
    run_values: dict[str, int | None] = {}
    for key in _RUN_KEYS:
        value = data.get(key, _RUN_DEFAULTS[key])
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise UserInputError(f"--analysis: {key} must be a whole number, not {value!r}")
        run_values[key] = value
    run = AnalysisRun(
        failure_limit=run_values["failure-limit"] or 0,
        inconclusive_limit=run_values["inconclusive-limit"],
        consecutive_error_limit=run_values["consecutive-error-limit"] or 0,
    )
    return replace(limits, **changes), run


def _quantiles(value: Any) -> tuple[tuple[float, float | None], ...]:
    if not isinstance(value, dict):
        raise UserInputError('--analysis: quantiles must be an object like {"p99": 0.3}')
    out = []
    for key, tolerance in value.items():
        match = re.fullmatch(r"p(\d{1,2}(?:\.\d+)?)", str(key))
        if not match or not 0 < float(match.group(1)) < 100:
            raise UserInputError(f"--analysis: quantile {key!r} is not a name like p50 or p99")
        if tolerance is not None and (not isinstance(tolerance, int | float) or tolerance < 0):
            raise UserInputError(f"--analysis: the tolerance of {key} must be a number ≥ 0")
        out.append((float(match.group(1)) / 100, None if tolerance is None else float(tolerance)))
    return tuple(sorted(out))


def _selector(text: str, option: str) -> str:
    parts = [p for p in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', text) if p.strip()]
    if not parts or not all(_SELECTOR.match(p) for p in parts):
        raise UserInputError(
            f"{option} {text!r} is not a list of PromQL label matchers, e.g. "
            'app_kubernetes_io_name="m",rollouts_pod_template_hash="abc"'
        )
    return ",".join(p.strip() for p in parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", required=True, help="Prometheus address, http(s)://…")
    parser.add_argument("--canary", required=True, help="label matchers of the canary's pods")
    parser.add_argument("--stable", required=True, help="label matchers of the stable pods")
    parser.add_argument("--interval", default="30s", help="analysis interval (default 30s)")
    parser.add_argument(
        "--min-requests", type=int, default=200, help="canary requests a step needs"
    )
    parser.add_argument(
        "--min-intervals", type=int, default=2, help="intervals a step lasts at least"
    )
    parser.add_argument(
        "--max-intervals",
        type=int,
        default=None,
        help="intervals before inconclusive (default: --analysis' max-intervals, else 30)",
    )
    parser.add_argument(
        "--analysis",
        default="",
        help="the environment's analysis section as JSON (kebab-case keys)",
    )


def run(args: argparse.Namespace, stream: IO[str]) -> int:
    limits, analysis_run = limits_from(args.analysis, args.min_requests)
    data = json.loads(args.analysis) if args.analysis else {}
    max_intervals = args.max_intervals or int(data.get("max-intervals", 30))
    if args.min_intervals < 1 or max_intervals < 1 or args.min_requests < 0:
        raise UserInputError("--min-intervals and --max-intervals must be ≥ 1, --min-requests ≥ 0")
    stable = PrometheusArm(args.prometheus, _selector(args.stable, "--stable"))
    canary = PrometheusArm(args.prometheus, _selector(args.canary, "--canary"))

    def emit(entry: dict[str, Any]) -> None:
        print(json.dumps(entry, default=str, sort_keys=True), file=stream, flush=True)

    action, why = analyse(
        stable,
        canary,
        limits=limits,
        policy=StepPolicy(args.min_intervals, max_intervals, 0.0),
        run=analysis_run,
        interval=parse_duration(args.interval),
        emit=emit,
    )
    emit({"result": action, "explanation": why})
    return 0 if action == "pass" else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlcd.rollout.watch", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, sys.stdout)
    except MlcdError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
