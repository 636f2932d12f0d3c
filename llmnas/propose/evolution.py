"""Search methods over the offline space that are known to beat random search on NAS benchmarks, at the
level of decisions (a point of propose/space.py), with what the proposer has seen so far (``History``):

- ``evolve``: aging (regularized) evolution, Real et al. 2019: a tournament of ``TOURNAMENT`` among the
  last ``POPULATION`` evaluated points, the winner's child differs in one decision that changes its code;
- ``local``: local search around the best point (White et al. 2021): its one-decision neighbours not
  seen yet, in random order;
- ``predict``: predictor-guided proposals, as BANANAS (White et al. 2021): an ensemble of ``MEMBERS``
  ridge regressions on the one-hot decisions, each fitted on a bootstrap sample of the points seen, ranks
  the unseen neighbours of the best points and a few uniform samples by mean plus one standard deviation
  over the members; only the top one is trained.

Each takes the seeded RNG and returns a point inside the spec's parameter limit and not seen yet, or None
(the caller samples instead). Two points are the same when they render the same code (a decision of a
block the model does not have, or a residual on a downsampling block, changes nothing); points are kept
canonical, such decisions zeroed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache

import numpy as np

from llmnas.propose import space
from llmnas.propose.base import Operator

POPULATION, TOURNAMENT = 20, 5
TOP, SAMPLES, MEMBERS, RIDGE = 5, 20, 10, 1.0
MIN_FIT = 6  # points seen before the predictor is fitted
TRIES = 32

Point = tuple[int, ...]


@cache
def _layout(modality: str) -> tuple[int, tuple[int, ...]]:
    """Where ``blocks`` is, and each decision's block (per-block decisions end in their block's index:
    channels0, width3; the others belong to every model: -1)."""
    names = [d.name for d in space.decisions_for(modality)]
    return names.index("blocks"), tuple(int(n[-1]) if n[-1].isdigit() else -1 for n in names)


def _unused(modality: str, point: Point) -> list[bool]:
    """For each decision, whether it belongs to a block ``point`` does not have."""
    where, block_of = _layout(modality)
    blocks = space.decisions_for(modality)[where].choices[point[where]]
    return [b >= blocks for b in block_of]


def canonical(modality: str, point: Point) -> Point:
    """``point`` with the decisions of the blocks it does not have set to 0: the same code, one key."""
    return tuple(0 if unused else int(i) for i, unused in zip(point, _unused(modality, point), strict=True))


def active(modality: str, point: Point) -> list[int]:
    """Indices of the decisions that shape ``point``'s code."""
    return [i for i, unused in enumerate(_unused(modality, point)) if not unused]


def neighbours(modality: str, point: Point) -> list[Point]:
    """Every point one active decision away whose code differs from ``point``'s, canonical, one per code."""
    decisions = space.decisions_for(modality)
    codes = {space.render(modality, point): point}
    for i in active(modality, point):
        for choice in range(len(decisions[i].choices)):
            if choice != point[i]:
                other = canonical(modality, (*point[:i], choice, *point[i + 1 :]))
                codes.setdefault(space.render(modality, other), other)
    return list(codes.values())[1:]


class History:
    """The points a proposer has had evaluated, in order, with their rewards (failures included)."""

    def __init__(self, modality: str, rows: Iterable[tuple[Point, float]] = ()):
        self.modality = modality
        self.rows: list[tuple[Point, float]] = []
        self.codes: set[str] = set()
        for point, reward in rows:
            self.add(tuple(point), reward)

    def add(self, point: Point, reward: float) -> None:
        self.rows.append((canonical(self.modality, point), float(reward)))
        self.codes.add(space.render(self.modality, point))

    def seen(self, point: Point) -> bool:
        return space.render(self.modality, point) in self.codes

    def best(self, k: int = 1) -> list[Point]:
        return [p for p, _ in sorted(self.rows, key=lambda row: -row[1])[:k]]

    def to_json(self) -> list:
        return [[list(p), r] for p, r in self.rows]


Fits = Callable[[Point], bool]  # inside the spec's parameter limit


def _fresh(history: History, points: Iterable[Point], fits: Fits) -> Iterable[Point]:
    for p in points:
        if not history.seen(p) and fits(p):
            yield p


def _mutant(history: History, parent: Point, rng: np.random.Generator, fits: Fits) -> Point | None:
    near = neighbours(history.modality, parent)
    order = rng.permutation(len(near))
    return next(_fresh(history, (near[i] for i in order), fits), None)


def evolve(history: History, rng: np.random.Generator, fits: Fits) -> Point | None:
    """Aging evolution: the best of a tournament among the last POPULATION, mutated in one decision (the
    next best of the tournament when no mutant of it is unseen and inside the limit)."""
    population = history.rows[-POPULATION:]
    picks = rng.choice(len(population), size=min(TOURNAMENT, len(population)), replace=False)
    for parent, _ in sorted((population[i] for i in picks), key=lambda row: -row[1]):
        point = _mutant(history, parent, rng, fits)
        if point is not None:
            return point
    return None


def local(history: History, rng: np.random.Generator, fits: Fits) -> Point | None:
    """Local search: an unseen neighbour of the best point (of the next best when all are seen)."""
    for best in history.best(TOP):
        point = _mutant(history, best, rng, fits)
        if point is not None:
            return point
    return None


def _features(modality: str, points: list[Point]) -> np.ndarray:
    """One-hot decisions: what the forest splits on."""
    sizes = [len(d.choices) for d in space.decisions_for(modality)]
    out = np.zeros((len(points), sum(sizes)))
    offsets = np.cumsum([0, *sizes[:-1]])
    for row, p in enumerate(points):
        out[row, offsets + np.asarray(p)] = 1.0
    return out


def ensemble(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MEMBERS ridge regressions (with an intercept), each on a bootstrap sample: their weights, stacked."""
    x1 = np.hstack([x, np.ones((len(x), 1), x.dtype)])
    penalty = RIDGE * np.eye(x1.shape[1])
    penalty[-1, -1] = 0.0
    weights = []
    for _ in range(MEMBERS):
        pick = rng.integers(len(x1), size=len(x1))
        a, b = x1[pick], y[pick]
        weights.append(np.linalg.solve(a.T @ a + penalty, a.T @ b))
    return np.stack(weights)


def predict(history: History, rng: np.random.Generator, fits: Fits) -> Point | None:
    """Predictor-guided: the unseen one-decision neighbours of the best TOP points and SAMPLES uniform
    draws, ranked by the ensemble's mean plus one standard deviation over its members; the top one."""
    if len(history.rows) < MIN_FIT:
        return None
    near = (p for parent in history.best(TOP) for p in neighbours(history.modality, parent))
    drawn = (canonical(history.modality, space.sample_uniform(history.modality, rng)) for _ in range(SAMPLES))
    candidates = sorted(set(_fresh(history, [*near, *drawn], fits)))
    if not candidates:
        return None
    points, rewards = zip(*history.rows, strict=True)
    weights = ensemble(_features(history.modality, list(points)), np.asarray(rewards), rng)
    x = _features(history.modality, candidates)
    per_member = np.hstack([x, np.ones((len(x), 1))]) @ weights.T
    score = per_member.mean(axis=1) + per_member.std(axis=1)
    return candidates[int(np.argmax(score))]


METHODS = {Operator.evolve: evolve, Operator.local: local, Operator.predict: predict}

# The decisions each kind of code mutation (candidate/mutate.MUTATIONS) changes, by name without block index.
KINDS = {
    "width": ("channels", "width"),
    "kernel": ("kernel",),
    "depth": ("blocks",),
    "residual": ("residual",),
    "norm": ("norm",),
    "activation": ("activation",),
    "dropout": ("dropout",),
}


def mutated(history: History, point: Point, kind: str, rng: np.random.Generator, fits: Fits) -> Point | None:
    """``point`` with one decision of ``kind`` changed (a random one, to a random other choice) so that its
    code changes, unseen and inside the limit; None when no such change exists."""
    names = [d.name.rstrip("0123456789") for d in space.decisions_for(history.modality)]
    near = [
        p
        for p in neighbours(history.modality, point)
        if names[next(i for i, (a, b) in enumerate(zip(p, point, strict=True)) if a != b)]
        in KINDS.get(kind, ())
    ]
    return next(_fresh(history, (near[i] for i in rng.permutation(len(near))), fits), None)
