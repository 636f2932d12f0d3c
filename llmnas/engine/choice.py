"""The model handed back, chosen by the spec: limits, then quality floors, then the priority order.

Candidates come in already within the hard limits. Those that meet every floor go first (when none
does, all stay, and the reason says so). Then the spec's priorities, most important first (quality is
last when the words did not place it): with quality first, the highest validation score wins (ties go
to the next priority, then ``rank_key``); with a cost first (size, latency, FLOPs), the cheapest wins
among the candidates within ``spec.tolerance`` of the best validation score, or, when the spec has a
floor on quality, among those that meet it. best/, ``show``'s first row, ``export``'s default and the
report's headline all take this order, and ``why`` says in one line what decided.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from llmnas.metrics import quality, rank_key
from llmnas.task.spec import FLOORS, PRIORITIES, TaskSpec

T = TypeVar("T")
_QUALITY_FLOORS = ("accuracy", "r2")  # floors on the validation score itself
_COST_WORDS = {"size": "smallest", "latency": "fastest", "flops": "fewest FLOPs"}


def meets_floors(metrics: Mapping[str, float | None], spec: TaskSpec) -> bool:
    """True when the metrics meet every quality floor of the spec (a missing metric does not)."""
    for name, bound in spec.floors.items():
        key, is_min = FLOORS[name]
        value = metrics.get(key)
        if value is None or (value < bound if is_min else value > bound):
            return False
    return True


def _cost(metrics: Mapping[str, float | None], name: str) -> float:
    value = quality(metrics) if name == "quality" else metrics.get(PRIORITIES[name])
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.inf
    return -float(value) if name == "quality" else float(value)


@dataclass(frozen=True)
class Choice:
    """The candidates in the spec's order (the first is handed back) and why the first won."""

    order: list[int]
    why: str


def choose(items: Sequence[T], metrics_of: Callable[[T], Mapping], spec: TaskSpec) -> Choice:
    """Order ``items`` by the spec (see the module docstring); stable for equal keys."""
    if not items:
        return Choice([], "no candidate passed")
    metrics = [metrics_of(x) for x in items]
    meeting = [i for i, m in enumerate(metrics) if meets_floors(m, spec)]
    pool = meeting or list(range(len(items)))
    order = spec.order()

    def key(i: int) -> tuple:
        return (*(_cost(metrics[i], name) for name in order), *rank_key(metrics[i]))

    if order[0] == "quality":
        eligible, rule = sorted(pool, key=key), None
    else:
        best = max((quality(metrics[i]) for i in pool if quality(metrics[i]) is not None), default=None)
        has_quality_floor = any(f in spec.floors for f in _QUALITY_FLOORS) and meeting
        if has_quality_floor or best is None:
            eligible = list(pool)
        else:
            eligible = [
                i for i in pool if (quality(metrics[i]) or -math.inf) >= best - spec.tolerance - 1e-12
            ]
        eligible.sort(key=key)
        rule = (best, has_quality_floor)
    chosen, in_pool = set(eligible), set(pool)
    rest = sorted(
        (i for i in range(len(items)) if i not in chosen),
        key=lambda i: (i not in in_pool, *rank_key(metrics[i])),
    )
    ordered = eligible + rest
    return Choice(ordered, _why(metrics[ordered[0]], spec, len(meeting), rule))


def _why(m: Mapping, spec: TaskSpec, meeting: int, rule: tuple | None) -> str:
    q = quality(m)
    score = "R²" if spec.task == "regression" else "val"
    head = f"chosen: {int(m.get('params') or 0):,} params, {score} {q:.3f}" if q is not None else "chosen"
    if m.get("latency_ms") is not None and "latency" in spec.priorities:
        head += f", {m['latency_ms']:.3f} ms"
    floors = ", ".join(spec.floor_lines())
    if spec.floors and not meeting:
        return f"{head} — no candidate meets {floors}: the closest by the priorities"
    first = spec.order()[0]
    where = f" of the {meeting} that meet {floors}" if spec.floors else ""
    if rule is None:
        then = spec.order()[1] if len(spec.order()) > 1 else None
        tie = f" (ties: {_COST_WORDS[then]})" if then in _COST_WORDS else ""
        return f"{head} — the best validation score{where}{tie}"
    best, by_floor = rule
    word = _COST_WORDS[first]
    if by_floor:
        return f"{head} — {word}{where}"
    tol = f"{spec.tolerance * 100:g} pt" if spec.task == "classification" else f"{spec.tolerance:g}"
    best_text = f" ({best:.3f})" if best is not None else ""
    return f"{head} — {word}{where} within {tol} of the best{best_text}"
