import math

import numpy as np
import pytest

from llmnas.engine.archive import Archive, Entry
from llmnas.engine.scoring import MAX_ROW_LOSS, cross_entropy
from llmnas.metrics import (
    OBJECTIVES,
    crowding_distance,
    dominates,
    front,
    objective_vector,
    objectives_for,
    pareto_front,
    rank_key,
)

MM = ("max", "min")


def test_dominates():
    assert dominates((0.9, 10), (0.8, 20), MM)
    assert dominates((0.9, 10), (0.9, 20), MM)
    assert not dominates((0.9, 10), (0.9, 10), MM)
    assert not dominates((0.9, 30), (0.8, 20), MM)
    assert dominates((1, 1), (0, 0), ("max", "max"))
    assert not dominates((0, 0), (1, 1), ("max", "max"))
    with pytest.raises(ValueError):
        dominates((1,), (2,), ("up",))


def test_front_simple_and_duplicates():
    pts = [(0.9, 100), (0.8, 50), (0.85, 200), (0.9, 100), (0.7, 50), (0.95, 400)]
    # (0.85, 200) is dominated by (0.9, 100); (0.7, 50) by (0.8, 50); the duplicates both stay.
    assert pareto_front(pts, MM) == [0, 1, 3, 5]
    assert pareto_front([], MM) == []
    assert pareto_front([(1, 1)], MM) == [0]


def test_front_with_inf_and_nan():
    pts = [(0.9, 10, math.inf), (0.9, 10, 1.0), (0.5, 5, math.inf), (math.nan, 1, 1)]
    senses = [s for _, s in OBJECTIVES]
    assert pareto_front(pts, senses) == [1, 2, 3]


def test_front_of_metrics_over_the_objectives_asked():
    fast = {"val_r2": 0.8, "params": 100, "latency_ms": 1.0}  # R² is the quality of a regression
    slow_small = {"val_r2": 0.8, "params": 50, "latency_ms": 9.0}
    worse = {"val_r2": 0.7, "params": 100, "latency_ms": 1.0}
    assert front([fast, slow_small, worse]) == [0, 1]
    assert front([fast, slow_small, worse], objectives_for(latency_goal=False)) == [1]
    assert front([]) == []


def test_objective_vector_missing_is_worst():
    assert objective_vector({"val_acc": 0.9, "params": 100}) == (0.9, 100.0, math.inf)
    assert objective_vector({"params": 1, "latency_ms": None}) == (-math.inf, 1.0, math.inf)


def test_crowding_distance():
    pts = [(0.0, 0.0), (1.0, 1.0), (2.0, 4.0), (4.0, 6.0)]
    d = crowding_distance(pts, ("max", "min"))
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx(2 / 4 + 4 / 6)
    assert d[2] == pytest.approx(3 / 4 + 5 / 6)
    assert crowding_distance([(1, 1), (2, 2)], MM) == [math.inf, math.inf]
    same = crowding_distance([(1, 1)] * 4, MM)
    assert sum(math.isinf(x) for x in same) == 2 and sorted(same)[:2] == [0.0, 0.0]


def test_crowding_distance_inf_value():
    d = crowding_distance([(1, 0), (2, 1), (3, math.inf), (4, math.inf)], ("max", "min"))
    assert d[0] == d[3] == math.inf
    assert d[1] == math.inf  # its neighbour in the second objective is infinitely far
    assert all(not math.isnan(x) for x in d)


def test_ties_in_validation_accuracy_are_broken_by_validation_loss_then_size():
    """On a small validation set every model can score 1.0: the evidence in the logits decides."""
    confident = {"val_acc": 1.0, "val_loss": 0.05, "params": 900}
    hesitant = {"val_acc": 1.0, "val_loss": 0.60, "params": 100}
    same_loss_smaller = {"val_acc": 1.0, "val_loss": 0.05, "params": 500}
    better = {"val_acc": 0.99, "val_loss": 0.01, "params": 10}
    ranked = sorted([hesitant, better, confident, same_loss_smaller], key=rank_key)
    assert ranked == [same_loss_smaller, confident, hesitant, better]
    assert rank_key({"val_acc": 1.0, "params": 1}) > rank_key(hesitant)  # a run logged before val_loss


def test_the_model_ranked_first_is_on_the_front_when_scores_tie():
    """Equal validation scores: the front compares them by loss as the ranking does, so a smaller model
    with a higher loss does not push the ranking's first off the front (the archive's front agrees)."""
    low_loss = {"val_acc": 0.85, "val_loss": 0.55, "params": 17_558}
    smaller = {"val_acc": 0.85, "val_loss": 0.60, "params": 14_642}
    worse = {"val_acc": 0.83, "val_loss": 0.65, "params": 13_578}
    twin = {"val_acc": 0.85, "val_loss": 0.55, "params": 20_000}  # same score and loss, larger: dominated
    objectives = objectives_for(latency_goal=False)
    assert front([low_loss, smaller, worse, twin], objectives) == [0, 1, 2]
    archive = Archive(objectives=objectives)
    for i, m in enumerate([twin, low_loss, smaller, worse]):
        archive.add(Entry(candidate_id=str(i), metrics=m, reward=0.5, depth=2))
    assert {e.candidate_id for e in archive.front()} == {"1", "2", "3"}
    rng = np.random.default_rng(0)
    for _ in range(200):  # whatever the ties, the ranking's first is on the front
        ms = [
            {"val_acc": rng.integers(3) / 4, "val_loss": rng.integers(3) / 4, "params": int(rng.integers(3))}
            for _ in range(6)
        ]
        first = min(range(6), key=lambda i: rank_key(ms[i]))
        assert first in front(ms, objectives)


def test_cross_entropy_is_the_mean_nll_and_finite_for_broken_rows():
    logits = np.array([[2.0, 0.0], [0.0, 0.0], [np.nan, 1.0]])
    labels = np.array([0, 1, 0])
    expected = (np.log(1 + np.exp(-2.0)) + np.log(2.0) + MAX_ROW_LOSS) / 3
    assert cross_entropy(logits, labels) == pytest.approx(expected)
    assert cross_entropy(np.array([[1e6, -1e6]]), np.array([1])) == MAX_ROW_LOSS  # capped, not inf
