"""The run page's inline SVG charts: metrics against the champion, findings by severity and
the rollout timeline. Plain functions from numbers to an `<svg>` string; no reading of the
bundle here (runreport does that).

Colours: the candidate / canary (the new thing) is blue, the champion / stable (what is
live) orange, as on the evaluation's own plots. Each chart has a colour no other part of
the page uses, so a screenshot shows which parts were drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlcd.presentation import BOUNDED, SEVERITIES, metric_name, number

CANDIDATE = "#1f77b4"
CHAMPION = "#ff7f0e"
WEIGHT = "#12b5cb"  # traffic on the canary (rollout timeline)
LIMIT = "#c5221f"  # a configured bound (threshold, max error rate, max latency)
SEVERITY_COLOUR = dict(
    zip(SEVERITIES, ("#7b1fa2", "#e8453c", "#f9ab00", "#4285f4", "#9aa0a6"), strict=True)
)
# Keyed by the judge's outcomes (a literal {"pass": …} reads as a password to bandit B105).
OUTCOME_COLOUR: dict[str, str] = dict(
    zip(
        ("pass", "fail", "error", "inconclusive"),
        ("#34a853", "#d93025", "#f29900", "#9aa0a6"),
        strict=True,
    )
)

e = html.escape


# ----------------------------------------------------------------------------- SVG


def svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{e(label)}">'
        f"<title>{e(label)}</title>{body}</svg>"
    )


def text(
    x: float,
    y: float,
    words: str,
    *,
    anchor: str = "start",
    size: int = 12,
    colour: str = "#3c4043",
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'fill="{colour}" font-weight="{weight}">{e(words)}</text>'
    )


def line(
    x1: float, y1: float, x2: float, y2: float, colour: str, *, width: float = 1, dash: str = ""
) -> str:
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="{width}"{dashed}/>'
    )


def nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10 * power


def _pair(value: Any) -> list[float | None]:
    return [number(v) for v in value] if isinstance(value, list) else []


# ----------------------------------------------------------------------------- metrics


def _metric_axis(
    keys: Sequence[str],
    metrics: Mapping[str, Any],
    intervals: Mapping[str, Any],
    champion: Mapping[str, Any],
    thresholds: Mapping[str, float],
) -> tuple[float, float]:
    """The axis's ends: zoomed to where the values, intervals and bounds are."""
    values: list[float] = []
    for k in keys:
        values.append(float(metrics[k]))
        values += [v for v in _pair(intervals.get(k)) if v is not None]
        values += [v for v in (number(champion.get(k)), number(thresholds.get(k))) if v is not None]
    low = max(0.0, math.floor((min(values) - 0.01) * 50) / 50)
    high = min(1.0, math.ceil((max(values) + 0.005) * 50) / 50) if max(values) <= 1 else 1.0
    return low, max(high, low + 0.02)


def _metric_legend(
    keys: Sequence[str],
    champion: Mapping[str, Any],
    thresholds: Mapping[str, float],
    champion_name: str,
    left: int,
) -> list[str]:
    legend = [
        f'<circle cx="{left + 6}" cy="12" r="6" fill="{CANDIDATE}"/>',
        text(left + 16, 16, "candidate (line: 95% interval)", size=11),
    ]
    if any(number(champion.get(k)) is not None for k in keys):
        lx = left + 200
        legend += [
            f'<path d="M{lx} 5 L{lx + 7} 12 L{lx} 19 L{lx - 7} 12 Z" fill="{CHAMPION}"/>',
            text(lx + 12, 16, f"champion {champion_name}".strip()),
        ]
    if any(k in thresholds for k in keys):
        lx = left + 320
        legend += [line(lx, 4, lx, 20, LIMIT, width=3), text(lx + 8, 16, "threshold")]
    return legend


def metric_chart(
    metrics: Mapping[str, Any],
    intervals: Mapping[str, Any],
    champion: Mapping[str, Any],
    thresholds: Mapping[str, float],
    *,
    champion_name: str = "",
) -> str:
    """Candidate (dot and interval) against champion (diamond) and thresholds (red tick),
    one row per bounded metric, on an axis zoomed to where the values are."""
    keys = [k for k in BOUNDED if number(metrics.get(k)) is not None]
    if not keys:
        return ""
    low, high = _metric_axis(keys, metrics, intervals, champion, thresholds)
    left, right, row_h, top = 80, 420, 30, 30
    width, height = right + 20, top + row_h * len(keys) + 40

    def x(v: float) -> float:
        return left + (right - left) * (min(max(v, low), high) - low) / (high - low)

    parts = []
    for i in range(6):
        tick = low + (high - low) * i / 5
        parts.append(line(x(tick), top - 8, x(tick), height - 32, "#e8eaed"))
        parts.append(text(x(tick), height - 16, f"{tick:.3f}", anchor="middle", size=11))
    for i, k in enumerate(keys):
        y = top + row_h * i + row_h / 2
        parts.append(text(left - 10, y + 4, metric_name(k), anchor="end", size=13))
        pair = _pair(intervals.get(k))
        if len(pair) == 2 and pair[0] is not None and pair[1] is not None:
            parts.append(line(x(pair[0]), y, x(pair[1]), y, CANDIDATE, width=3))
        bound = number(thresholds.get(k))
        if bound is not None:
            parts.append(line(x(bound), y - 11, x(bound), y + 11, LIMIT, width=3))
        theirs = number(champion.get(k))
        if theirs is not None:
            cx = x(theirs)
            parts.append(
                f'<path d="M{cx:.1f} {y - 8:.1f} L{cx + 8:.1f} {y:.1f} L{cx:.1f} {y + 8:.1f} '
                f'L{cx - 8:.1f} {y:.1f} Z" fill="{CHAMPION}"/>'
            )
        mine = float(metrics[k])
        parts.append(f'<circle cx="{x(mine):.1f}" cy="{y:.1f}" r="7" fill="{CANDIDATE}"/>')
        parts.append(text(right + 14, y + 4, f"{mine:.4f}", size=12, weight="bold"))
    legend = _metric_legend(keys, champion, thresholds, champion_name, left)
    return svg(
        width + 50, height, "".join(legend + parts), "metrics of the candidate and the champion"
    )


# ----------------------------------------------------------------------------- findings


def severity_bar(counts: Mapping[str, int], *, width: int = 520) -> str:
    """A stacked bar of findings by severity, with a legend."""
    total = sum(counts.values())
    parts = []
    x = 0.0
    bar_y, bar_h = 6, 30
    if total == 0:
        parts.append(
            f'<rect x="0" y="{bar_y}" width="{width}" height="{bar_h}" rx="4" fill="#e6f4ea"/>'
        )
        parts.append(text(width / 2, bar_y + 20, "no findings", anchor="middle", size=13))
    else:
        for sev in SEVERITIES:
            n = counts.get(sev, 0)
            if not n:
                continue
            w = max(width * n / total, 6)
            parts.append(
                f'<rect x="{x:.1f}" y="{bar_y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{SEVERITY_COLOUR[sev]}"/>'
            )
            if w > 30:
                parts.append(
                    text(
                        x + w / 2,
                        bar_y + 20,
                        str(n),
                        anchor="middle",
                        size=13,
                        colour="#fff",
                        weight="bold",
                    )
                )
            x += w
    lx = 0
    for sev in SEVERITIES:
        parts.append(
            f'<rect x="{lx}" y="{bar_y + bar_h + 12}" width="14" height="14" '
            f'fill="{SEVERITY_COLOUR[sev]}"/>'
        )
        parts.append(text(lx + 20, bar_y + bar_h + 24, f"{sev.lower()} {counts.get(sev, 0)}"))
        lx += 104
    return svg(width, bar_y + bar_h + 34, "".join(parts), "findings by severity")


# ----------------------------------------------------------------------------- rollout


@dataclass(frozen=True)
class Interval:
    """One analysis interval of a rollout, as the timeline draws it.

    Read from `deploy-<env>/result.json` `details.measurements` (one entry per interval:
    `time`, `phase`, `outcome`, `reasons`, `metrics`). `weight` is the percentage of users'
    traffic on the canary: `weight` of the entry when the deploy stage writes it, else the
    number in a phase like "canary 10%", else 0 (a blue/green preview or a shadow gets
    synthetic or mirrored traffic only). Request and error counts are this interval's:
    `metrics.interval_canary_errors` when written, else the difference of the judge's
    cumulative `canary_errors` from the interval before.
    """

    index: int
    time: str
    phase: str
    outcome: str
    weight: float
    canary_requests: int | None
    canary_errors: int | None
    stable_requests: int | None
    stable_errors: int | None
    canary_p99_ms: float | None
    stable_p99_ms: float | None
    canary_p50_ms: float | None
    stable_p50_ms: float | None
    reason: str = ""

    @property
    def canary_error_rate(self) -> float | None:
        return _rate(self.canary_errors, self.canary_requests)

    @property
    def stable_error_rate(self) -> float | None:
        return _rate(self.stable_errors, self.stable_requests)


def _rate(errors: int | None, requests: int | None) -> float | None:
    if errors is None or not requests:
        return None
    return errors / requests


def final_weight(outcome: str) -> float | None:
    """Where the traffic ended: all on the new version, or all back on the old one."""
    if outcome in ("promoted", "deployed"):
        return 100.0
    if outcome in ("rolled back", "refused by gates"):
        return 0.0
    return None


@dataclass(frozen=True)
class _Frame:
    """The timeline's geometry: one column per interval (and one for the end)."""

    left: float
    right: float
    band: float
    panel_h: int = 80
    gap: int = 24
    top: int = 30

    def cx(self, i: int) -> float:
        return self.left + self.band * (i + 0.5)

    def panel(self, index: int) -> tuple[float, float]:
        y0 = self.top + index * (self.panel_h + self.gap)
        return y0, y0 + self.panel_h


def _timeline_legend(left: float, names: tuple[str, str]) -> list[str]:
    y = 14
    return [
        f'<rect x="{left}" y="{y - 10}" width="14" height="12" fill="{WEIGHT}"/>',
        text(left + 20, y, f"users' traffic on the {names[0]}"),
        line(left + 250, y - 4, left + 274, y - 4, CANDIDATE, width=3),
        text(left + 280, y, names[0]),
        line(left + 390, y - 4, left + 414, y - 4, CHAMPION, width=3, dash="6 3"),
        text(left + 420, y, names[1]),
        line(left + 530, y - 4, left + 554, y - 4, LIMIT, width=2, dash="4 4"),
        text(left + 560, y, "limit (analysis)"),
    ]


def _panel(frame: _Frame, index: int, label: str, ticks: list[str]) -> list[str]:
    """A panel's frame, label and horizontal ticks (bottom to top)."""
    y0, _ = frame.panel(index)
    h = frame.panel_h
    parts = [
        (
            f'<rect x="{frame.left}" y="{y0}" width="{frame.right - frame.left}" height="{h}" '
            'fill="#fafafa" stroke="#dadce0"/>'
        ),
        text(frame.left - 52, y0 + h / 2 + 4, label, anchor="end", size=12, weight="bold"),
    ]
    for j, tick in enumerate(ticks):
        ty = y0 + h - h * j / (len(ticks) - 1)
        parts.append(line(frame.left, ty, frame.right, ty, "#eceff1"))
        parts.append(text(frame.left - 6, ty + 4, tick, anchor="end", size=10, colour="#5f6368"))
    return parts


def _weight_bars(frame: _Frame, weights: Sequence[float]) -> list[str]:
    """Panel 1: the share of users' traffic on the canary, one bar per column."""
    parts = _panel(frame, 0, "traffic %", ["0", "50", "100"])
    _, y1 = frame.panel(0)
    h_max = frame.panel_h
    for i, w in enumerate(weights):
        h = h_max * (w or 0) / 100
        x0 = frame.left + frame.band * i + frame.band * 0.12
        parts.append(
            f'<rect x="{x0:.1f}" y="{y1 - h:.1f}" width="{frame.band * 0.76:.1f}" '
            f'height="{h:.1f}" fill="{WEIGHT}"/>'
        )
        inside = h >= h_max - 14
        parts.append(
            text(
                frame.cx(i),
                y1 - h + 14 if inside else y1 - h - 4,
                f"{w:g}%",
                anchor="middle",
                size=11,
                colour="#fff" if inside else "#202124",
            )
        )
    return parts


def _series(
    frame: _Frame,
    index: int,
    values: Sequence[float | None],
    high: float,
    *,
    colour: str,
    dash: str = "",
) -> list[str]:
    y_top, y_bottom = frame.panel(index)
    points = [
        (frame.cx(i), y_bottom - (y_bottom - y_top) * min(v, high) / high)
        for i, v in enumerate(values)
        if v is not None
    ]
    parts = []
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="3"{dashed}/>'
        )
    parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>' for x, y in points)
    return parts


@dataclass(frozen=True)
class _Measure:
    """Panels 2 and 3: canary against stable of one measure, and its limit."""

    label: str
    canary: Sequence[float | None]
    stable: Sequence[float | None]
    limit: float | None
    headroom: float  # the axis shows the limit times this
    floor: float  # the smallest top of the axis
    tick: Callable[[float], str]


def _measure_panel(frame: _Frame, index: int, measure: _Measure) -> list[str]:
    seen = [v for v in [*measure.canary, *measure.stable] if v is not None]
    high = nice_ceiling(max([*seen, (measure.limit or 0) * measure.headroom, measure.floor]))
    parts = _panel(frame, index, measure.label, ["0", measure.tick(high / 2), measure.tick(high)])
    _, y1 = frame.panel(index)
    if measure.limit is not None:
        ly = y1 - frame.panel_h * min(measure.limit, high) / high
        parts.append(line(frame.left, ly, frame.right, ly, LIMIT, width=2, dash="4 4"))
    parts += _series(frame, index, measure.stable, high, colour=CHAMPION, dash="6 3")
    parts += _series(frame, index, measure.canary, high, colour=CANDIDATE)
    return parts


def _timeline_axis(
    frame: _Frame, steps: Sequence[Interval], outcome: str, ends: bool, axis_y: float
) -> list[str]:
    """Under the panels: each interval's number, phase and outcome; then the end."""
    parts = []
    for i, s in enumerate(steps):
        colour = OUTCOME_COLOUR.get(s.outcome, "#9aa0a6")
        parts.append(text(frame.cx(i), axis_y, f"#{s.index} {s.phase}", anchor="middle", size=11))
        parts.append(
            f'<rect x="{frame.cx(i) - 42:.1f}" y="{axis_y + 6}" width="84" height="16" rx="8" '
            f'fill="{colour}"/>'
        )
        parts.append(
            text(
                frame.cx(i),
                axis_y + 18,
                s.outcome,
                anchor="middle",
                size=10,
                colour="#fff",
                weight="bold",
            )
        )
    if ends:
        x = frame.cx(len(steps))
        parts.append(text(x, axis_y, "end", anchor="middle", size=11))
        parts.append(text(x, axis_y + 18, outcome, anchor="middle", size=11, weight="bold"))
    return parts


def timeline_chart(
    steps: Sequence[Interval],
    *,
    outcome: str = "",
    max_error_rate: float | None = None,
    max_p99_ms: float | None = None,
    names: tuple[str, str] = ("canary", "stable"),
    width: int = 1040,
) -> str:
    """Three panels over the analysis intervals: traffic on the canary, error rate and p99
    latency of canary (blue) against stable (orange); dashed red lines are the limits."""
    final = final_weight(outcome)
    columns = len(steps) + (1 if final is not None else 0)
    left, right = 160, width - 20
    frame = _Frame(left=left, right=right, band=(right - left) / max(columns, 1))
    weights = [s.weight for s in steps] + ([final] if final is not None else [])
    errors = _Measure(
        "error rate",
        [s.canary_error_rate for s in steps],
        [s.stable_error_rate for s in steps],
        max_error_rate,
        1.25,
        0.002,
        lambda v: f"{v:.2%}",
    )
    latency = _Measure(
        "p99 latency ms",
        [s.canary_p99_ms for s in steps],
        [s.stable_p99_ms for s in steps],
        max_p99_ms,
        1.1,
        1.0,
        lambda v: f"{v:g}",
    )
    parts = [
        *_timeline_legend(left, names),
        *_weight_bars(frame, weights),
        *_measure_panel(frame, 1, errors),
        *_measure_panel(frame, 2, latency),
    ]
    axis_y = frame.panel(2)[1] + 18
    parts += _timeline_axis(frame, steps, outcome, final is not None, axis_y)
    return svg(width, int(axis_y + 30), "".join(parts), "rollout timeline")
