"""The report's plots, drawn with matplotlib as PNG bytes: the Pareto fronts and the search's progress.

matplotlib is imported on first use, so importing the report costs nothing until a plot is drawn.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from llmnas.engine.carbon import Grid
from llmnas.errors import UserError
from llmnas.metrics import pareto_front
from llmnas.results.read import Candidate, RunData, number, ranked

OPERATOR_COLOURS = {
    "generate": "#4C72B0",
    "mutate": "#DD8452",
    "crossover": "#55A868",
    "simplify": "#8172B3",
    "repair": "#C44E52",
    "scale": "#2A9D8F",
}
_EXTRA_COLOURS = ("#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD")
FRONT = "#E4572E"
POINT = "#7A9CC6"
GREY = "#B8B8B8"
FAIL = "#C44E52"


def operator_colour(op: str | None, _cache: dict[str, str] = {}) -> str:  # noqa: B006 - memo
    if op in OPERATOR_COLOURS:
        return OPERATOR_COLOURS[op]
    key = op or "?"
    if key not in _cache:
        _cache[key] = _EXTRA_COLOURS[len(_cache) % len(_EXTRA_COLOURS)]
    return _cache[key]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _style(ax) -> None:
    ax.grid(True, color="#E6E6E6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#888888")
    ax.tick_params(colors="#444444", labelsize=9)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666", fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


Y_FLOOR = -1.0  # R² below this (worse than predicting the mean, by far) is drawn at the floor


def _y(c: Candidate) -> float | None:
    """The plotted validation score (accuracy, or R² floored at Y_FLOOR)."""
    return None if c.quality is None else max(c.quality, Y_FLOOR)


def _front_2d(points: list[tuple[float, float]]) -> list[int]:
    """Indices of (cost to minimise, accuracy to maximise) points on the 2-D front, by cost."""
    idx = pareto_front([(a, c) for c, a in points], ["max", "min"])
    return sorted(idx, key=lambda i: (points[i][0], -points[i][1]))


def _pareto_panel(
    ax, run: RunData, metric: str, label: str, limit_key: str, log_x: bool, unit: str = ""
) -> None:
    _style(ax)
    good = [c for c in ranked(run)[0] if c.metric(metric) is not None and c.quality is not None]
    greyed = [
        c
        for c in run.candidates
        if (not c.ok or c.over_limit) and c.metric(metric) is not None and c.quality is not None
    ]
    if not good and not greyed:
        _empty(ax, "No passing candidate yet")
        ax.set_title(f"Validation {run.score_name} vs {label}", fontsize=11, loc="left")
        return
    if greyed:
        ax.scatter(
            [c.metric(metric) for c in greyed],
            [_y(c) for c in greyed],
            marker="x",
            s=30,
            color=GREY,
            linewidths=1.2,
            label="over a limit",
            zorder=2,
        )
    pts = [(c.metric(metric), _y(c)) for c in good]
    front = _front_2d(pts) if pts else []
    on_front = set(front)
    rest = [p for i, p in enumerate(pts) if i not in on_front]
    if rest:
        ax.scatter(
            *zip(*rest, strict=True),
            s=34,
            color=POINT,
            edgecolors="white",
            linewidths=0.6,
            label="passed",
            zorder=3,
        )
    if front:
        fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color=FRONT, linewidth=1.6, alpha=0.8, zorder=4)
        ax.scatter(
            fx, fy, s=58, color=FRONT, edgecolors="black", linewidths=0.7, label="Pareto front", zorder=5
        )
        best = good[0]
        ax.scatter(
            [best.metric(metric)],
            [_y(best)],
            marker="*",
            s=260,
            color="#FFD23F",
            edgecolors="black",
            linewidths=0.8,
            label="best",
            zorder=6,
        )
        ax.annotate(
            best.candidate_id,
            (best.metric(metric), _y(best)),
            textcoords="offset points",
            xytext=(8, -14),
            fontsize=8,
            color="#333333",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            zorder=7,
        )
    limit = number(run.spec.get(limit_key))
    xs = [x for x, _ in pts] + [c.metric(metric) for c in greyed]
    if limit is not None:
        reach = 3.0 if log_x else 1.25  # draw the line only where it does not squash the points
        if limit <= max(xs) * reach:
            ax.axvline(limit, color=FAIL, linestyle="--", linewidth=1.1, alpha=0.8)
            ax.annotate(
                f"limit {_si(limit)}{unit}",
                (limit, 1),
                xycoords=("data", "axes fraction"),
                xytext=(-4, -12),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=FAIL,
            )
        else:
            ax.annotate(
                f"limit {_si(limit)}{unit} →",
                (1, 1),
                xycoords="axes fraction",
                xytext=(-4, -12),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=FAIL,
            )
    if log_x and all(x > 0 for x in xs):
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_si))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: _si(v) if f"{v:.0e}"[0] in "235" else ""))
    ys = [y for _, y in pts] + [_y(c) for c in greyed]
    lo, hi = min(ys), max(ys)
    pad = max(hi - lo, 0.02) * 0.08
    ax.set_ylim(lo - pad, hi + pad * 1.5)
    ax.set_xlabel(label, fontsize=10)
    ax.set_ylabel(f"validation {run.score_name}", fontsize=10)
    ax.set_title(f"Validation {run.score_name} vs {label}", fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="best", frameon=True, framealpha=0.9, edgecolor="none")


def _si(value: float, _pos: object = None) -> str:
    """3000 -> 3k, 1200000 -> 1.2M: short tick labels for counts."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def pareto_png(run: RunData) -> bytes:
    fig = _figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    _pareto_panel(left, run, "params", "parameters (log scale)", "max_params", log_x=True)
    _pareto_panel(right, run, "latency_ms", "CPU latency (ms)", "max_latency_ms", log_x=False, unit=" ms")
    return _png(fig)


def progress_png(run: RunData) -> bytes:
    fig = _figure(11, 3.8)
    ax = fig.subplots()
    _style(ax)
    cs = run.candidates
    scored = [c for c in cs if c.ok and c.quality is not None]
    if not cs:
        _empty(ax, "No candidate proposed yet")
        return _png(fig)
    for op in dict.fromkeys(c.operator for c in scored):
        mine = [c for c in scored if c.operator == op]
        ax.scatter(
            [c.index for c in mine],
            [_y(c) for c in mine],
            s=30,
            color=operator_colour(op),
            edgecolors="white",
            linewidths=0.5,
            label=op or "?",
            alpha=0.9,
            zorder=3,
        )
    best_x, best_y, best = [], [], None
    for c in cs:
        v = _y(c) if c.ok and not c.over_limit else None
        if v is not None and (best is None or v > best):
            best = v
        if best is not None:
            best_x.append(c.index)
            best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="#222222", linewidth=1.8, label="best so far", zorder=4)
    failed = [c for c in cs if c.status == "failed"]
    if failed:
        ax.scatter(
            [c.index for c in failed],
            [0.03] * len(failed),
            marker="x",
            s=26,
            color=FAIL,
            transform=ax.get_xaxis_transform(),
            label="failed",
            zorder=3,
            clip_on=False,
        )
    if scored:
        ys = [_y(c) for c in scored]
        span = max(max(ys) - min(ys), 0.02)
        ax.set_ylim(min(ys) - 0.14 * span, max(ys) + 0.1 * span)  # room for the failure marks
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.55, "No passing candidate yet", ha="center", transform=ax.transAxes, color="#666666")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, max(c.index for c in cs) + 0.5)
    ax.set_xlabel("candidates proposed", fontsize=10)
    ax.set_ylabel(f"validation {run.score_name}", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _png(fig)


def carbon_png(run: RunData) -> bytes | None:
    """CO2 over time: the cumulative estimate (left axis) and the grid intensity each evaluation was
    charged (right axis), with carbon pacing's pauses shaded; None when no evaluation has a CO2 figure."""
    from datetime import datetime

    charged = sorted(
        (datetime.fromisoformat(c.time), c.metric("co2_g"), c.metric("carbon_g_per_kwh"))
        for c in run.candidates
        if c.time and c.metric("co2_g") is not None
    )
    if not charged:
        return None
    fig = _figure(11, 3.6)
    ax = fig.subplots()
    _style(ax)
    total, cumulative = 0.0, []
    for _, grams, _ in charged:
        total += grams
        cumulative.append(total)
    times = [t for t, _, _ in charged]
    ax.step(times, cumulative, where="post", color="#222222", linewidth=1.8, label="CO2 so far", zorder=4)
    for pause in run.view.pauses:
        start, until = datetime.fromisoformat(pause.time), datetime.fromisoformat(pause.until)
        ax.axvspan(start, until, color=GREY, alpha=0.25, linewidth=0, zorder=1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("estimated CO2 (g)", fontsize=10)
    ax.set_xlabel("time (UTC)", fontsize=10)
    intensity = [(t, g) for t, _, g in charged if g is not None]
    if intensity:
        right = ax.twinx()
        right.scatter(*zip(*intensity, strict=True), s=22, color=FRONT, label="intensity charged", zorder=3)
        if forecast := _forecast(run, times[0], times[-1]):
            right.step(*zip(*forecast, strict=True), where="post", color=FRONT, alpha=0.35, linewidth=1)
        right.set_ylabel("gCO2/kWh", fontsize=10, color=FRONT)
        right.set_ylim(bottom=0)
        right.tick_params(colors=FRONT, labelsize=9)
        right.spines["top"].set_visible(False)
    fig.autofmt_xdate()
    return _png(fig)


def _forecast(run: RunData, first, last) -> list:
    """The run's carbon forecast (when it has one and the file is still there) from ``first`` to ``last``."""
    path = run.record.config.get("carbon_forecast")
    if not isinstance(path, str):
        return []
    try:
        grid = Grid.from_csv(path)
    except UserError:
        return []
    a, b = first.timestamp(), last.timestamp()
    edges = [a, *(t for t in grid.times if a < t < b), b]
    return [(datetime.fromtimestamp(t, UTC), grid.at(t)) for t in edges]
