"""The search archive: a MAP-Elites grid (log10 params x depth) plus the Pareto front over OBJECTIVES.

Only passing entries are added. The grid and the front are always a function of the entries and their
order, so the state is just the entries. A refinement that changes limits or rewards builds a new archive
from the passing evaluations (Search.apply_spec).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from llmnas.metrics import OBJECTIVES, crowding_distance, metrics_dominate, objective_vector

SELECTORS = ("pareto", "elite", "tournament", "uniform_grid")  # what the policy learns to choose among
UNIFORM = "uniform"  # random search's selector: any passing entry, nothing preferred
_TOURNAMENT = 3


@dataclass(frozen=True)
class Entry:
    """One evaluated passing candidate; ``depth`` is its number of weight layers."""

    candidate_id: str
    metrics: dict[str, float]
    reward: float
    depth: int = 0


class Archive:
    """MAP-Elites grid + Pareto front. Cells: ``params_bins`` equal bins of log10(params) over
    ``params_range`` (outside values clamp to the end bins) x depth 1, 2, ..., ``depth_max``+. The
    front is over ``objectives`` (see ``metrics.objectives_for``)."""

    def __init__(
        self,
        params_range: tuple[float, float] = (2.0, 7.0),
        params_bins: int = 10,
        depth_max: int = 12,
        objectives: tuple[tuple[str, str], ...] = OBJECTIVES,
    ) -> None:
        self.objectives = tuple(objectives)
        self._senses = tuple(s for _, s in self.objectives)
        if not params_range[0] < params_range[1] or params_bins < 1 or depth_max < 1:
            raise ValueError("Archive needs params_range lo < hi, params_bins >= 1 and depth_max >= 1")
        self.params_range = (float(params_range[0]), float(params_range[1]))
        self.params_bins = int(params_bins)
        self.depth_max = int(depth_max)
        self._entries: list[Entry] = []
        self._ids: set[str] = set()
        self._rebuild()

    # -- grid geometry -------------------------------------------------------------------------
    def cell(self, entry: Entry) -> tuple[int, int]:
        """The (params bin, depth bin) of an entry."""
        lo, hi = self.params_range
        p = entry.metrics.get("params")
        x = min(max(math.log10(p), lo), hi) if p is not None and p > 0 else lo
        pi = min(max(int(math.floor((x - lo) / (hi - lo) * self.params_bins)), 0), self.params_bins - 1)
        di = min(max(int(entry.depth), 1), self.depth_max) - 1
        return pi, di

    # -- adding and filtering ------------------------------------------------------------------
    def _rebuild(self) -> None:
        self._grid: dict[tuple[int, int], Entry] = {}
        self._front: list[Entry] = []
        for e in self._entries:
            self._place(e)

    def _place(self, entry: Entry) -> bool:
        key = self.cell(entry)
        old = self._grid.get(key)
        improved = old is None or entry.reward > old.reward
        if improved:
            self._grid[key] = entry
        if any(metrics_dominate(f.metrics, entry.metrics, self.objectives) for f in self._front):
            return improved
        self._front = [
            f for f in self._front if not metrics_dominate(entry.metrics, f.metrics, self.objectives)
        ]
        self._front.append(entry)
        return True

    def add(self, entry: Entry) -> bool:
        """Add a passing entry; True if it took a cell or joined the front. A known id is ignored."""
        if entry.candidate_id in self._ids:
            return False
        self._entries.append(entry)
        self._ids.add(entry.candidate_id)
        return self._place(entry)

    # -- views ---------------------------------------------------------------------------------
    @property
    def all_entries(self) -> list[Entry]:
        """Every entry added, in insertion order."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def front(self) -> list[Entry]:
        """The Pareto front over ``objectives``, in insertion order."""
        return list(self._front)

    def elites(self) -> list[Entry]:
        """The best-reward entry of each occupied cell, ordered by cell."""
        return [self._grid[k] for k in sorted(self._grid)]

    def coverage(self) -> float:
        """Occupied cells / all cells."""
        return len(self._grid) / (self.params_bins * self.depth_max)

    def qd_score(self) -> float:
        """Sum of the elites' rewards (passing rewards are >= 0)."""
        return float(sum(e.reward for e in self._grid.values()))

    # -- parent selection ----------------------------------------------------------------------
    def select(self, selector: str, k: int, rng: np.random.Generator) -> list[Entry]:
        """Up to ``k`` distinct parents (fewer, possibly none, when the archive is small).

        pareto: sample the front without replacement, weights by linear rank of crowding distance
        (least crowded first); elite: the k elites with the highest reward; tournament: repeated
        size-3 tournaments by reward among the elites not yet picked; uniform_grid: k occupied cells
        uniformly without replacement; uniform: k passing entries uniformly without replacement.
        """
        if selector not in (*SELECTORS, UNIFORM):
            raise ValueError(f"unknown selector {selector!r}; known: {', '.join((*SELECTORS, UNIFORM))}")
        if selector == "pareto":
            pool = self.front()
        else:
            pool = self.all_entries if selector == UNIFORM else self.elites()
        k = min(max(int(k), 0), len(pool))
        if k == 0:
            return []
        if selector == "pareto":
            dist = crowding_distance(
                [objective_vector(e.metrics, self.objectives) for e in pool], self._senses
            )
            ranked = sorted(range(len(pool)), key=lambda i: -dist[i])
            weights = np.empty(len(pool))
            weights[ranked] = np.arange(len(pool), 0, -1, dtype=float)
            idx = rng.choice(len(pool), size=k, replace=False, p=weights / weights.sum())
            return [pool[i] for i in idx]
        if selector == "elite":
            return sorted(pool, key=lambda e: -e.reward)[:k]
        if selector in ("uniform_grid", UNIFORM):
            return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
        remaining, picked = list(pool), []
        for _ in range(k):
            size = min(_TOURNAMENT, len(remaining))
            contenders = rng.choice(len(remaining), size=size, replace=False)
            winner = max(contenders, key=lambda i: (remaining[i].reward, -i))
            picked.append(remaining.pop(winner))
        return picked

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON-serialisable state: geometry and entries in order."""
        return {
            "params_range": list(self.params_range),
            "params_bins": self.params_bins,
            "depth_max": self.depth_max,
            "entries": [asdict(e) for e in self._entries],
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore exactly what ``state_dict`` saved (geometry included)."""
        self.params_range = (float(d["params_range"][0]), float(d["params_range"][1]))
        self.params_bins = int(d["params_bins"])
        self.depth_max = int(d["depth_max"])
        self._entries = [
            Entry(e["candidate_id"], dict(e["metrics"]), float(e["reward"]), int(e["depth"]))
            for e in d["entries"]
        ]
        self._ids = {e.candidate_id for e in self._entries}
        self._rebuild()
