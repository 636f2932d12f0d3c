import json

import numpy as np
import pytest

from llmnas.engine.archive import SELECTORS, UNIFORM, Archive, Entry


def e(cid, acc, params, reward=None, depth=2, latency=1.0):
    metrics = {"val_acc": acc, "params": params, "latency_ms": latency}
    return Entry(cid, metrics, acc if reward is None else reward, depth)


def filled(n=30, seed=0):
    rng = np.random.default_rng(seed)
    a = Archive()
    for i in range(n):
        p = float(10 ** rng.uniform(2, 7))
        acc = float(rng.uniform(0.5, 1.0))
        a.add(e(f"c{i}", acc, p, depth=int(rng.integers(1, 15)), latency=float(rng.uniform(0.1, 5))))
    return a


def test_cells():
    a = Archive()
    assert a.cell(e("a", 0.5, 100, depth=1)) == (0, 0)
    assert a.cell(e("a", 0.5, 10**6.99, depth=12)) == (9, 11)
    assert a.cell(e("a", 0.5, 10**9, depth=40)) == (9, 11)  # clamps
    assert a.cell(e("a", 0.5, 3, depth=0)) == (0, 0)
    assert a.cell(e("a", 0.5, float("inf"), depth=2)) == (9, 1)
    assert a.cell(e("a", 0.5, None, depth=2)) == (0, 1)
    assert a.cell(e("a", 0.5, 10**2.6, depth=3)) == (1, 2)
    b = Archive(params_range=(0, 4), params_bins=4, depth_max=3)
    assert b.cell(e("a", 0.5, 500, depth=5)) == (2, 2)
    assert b.coverage() == 0.0
    with pytest.raises(ValueError):
        Archive(params_range=(3, 2))


def test_grid_keeps_best_reward_per_cell():
    a = Archive()
    assert a.add(e("a", 0.8, 1000, reward=0.8))
    # same cell, lower reward and dominated: not added anywhere
    assert not a.add(e("b", 0.7, 1100, reward=0.7, latency=2.0))
    assert [x.candidate_id for x in a.elites()] == ["a"]
    assert a.add(e("c", 0.9, 1200, reward=0.9))
    assert [x.candidate_id for x in a.elites()] == ["c"]
    # equal reward: the incumbent stays
    a.add(e("d", 0.5, 1050, reward=0.9, latency=9))
    assert [x.candidate_id for x in a.elites()] == ["c"]
    assert len(a.all_entries) == 4
    assert a.coverage() == pytest.approx(1 / 120)
    assert a.qd_score() == pytest.approx(0.9)
    assert not a.add(e("a", 0.99, 10, reward=5))  # a known id is ignored
    assert len(a) == 4


def test_front_membership():
    a = Archive()
    a.add(e("big", 0.95, 100_000, depth=5))
    assert a.add(e("small", 0.80, 1_000, depth=5))  # new cell and front
    assert not a.add(e("worse", 0.79, 2_000, depth=5, latency=1.0))  # dominated by small, same cell
    assert a.add(e("dup", 0.80, 1_000, reward=0.1, depth=5))  # identical point joins the front
    assert [x.candidate_id for x in a.front()] == ["big", "small", "dup"]
    assert a.add(e("better", 0.96, 900, depth=5, latency=0.5))
    assert [x.candidate_id for x in a.front()] == ["better"]
    no_latency = e("nolat", 0.99, 900, depth=5, latency=None)
    assert a.add(no_latency)  # best accuracy: on the front despite unknown (inf) latency
    assert {x.candidate_id for x in a.front()} == {"better", "nolat"}


def test_select_small_archive():
    a = Archive()
    rng = np.random.default_rng(0)
    for s in (*SELECTORS, UNIFORM):
        assert a.select(s, 3, rng) == []
    a.add(e("only", 0.9, 1000))
    for s in (*SELECTORS, UNIFORM):
        assert [x.candidate_id for x in a.select(s, 3, rng)] == ["only"]
        assert a.select(s, 0, rng) == []
    with pytest.raises(ValueError, match="unknown selector"):
        a.select("best", 1, rng)


@pytest.mark.parametrize("selector", (*SELECTORS, UNIFORM))
def test_select_distinct_and_deterministic(selector):
    a = filled()
    picks = a.select(selector, 5, np.random.default_rng(7))
    again = a.select(selector, 5, np.random.default_rng(7))
    ids = [x.candidate_id for x in picks]
    assert ids == [x.candidate_id for x in again]
    pool = {"pareto": a.front(), UNIFORM: a.all_entries}.get(selector, a.elites())
    assert len(ids) == len(set(ids)) == min(5, len(pool))
    assert set(ids) <= {x.candidate_id for x in pool}


def test_elite_is_top_reward():
    a = filled()
    top = sorted(a.elites(), key=lambda x: -x.reward)[:3]
    assert a.select("elite", 3, np.random.default_rng(0)) == top


def test_tournament_prefers_high_reward():
    a = Archive()
    for i in range(12):
        a.add(e(f"c{i}", 0.5, 10**2.1, reward=i / 10, depth=i + 1))
    rng = np.random.default_rng(1)
    wins = [a.select("tournament", 1, rng)[0].reward for _ in range(300)]
    assert np.mean(wins) > 0.7  # uniform would be 0.55
    assert min(wins) >= 0.2  # the two worst can never win a size-3 tournament


def test_uniform_grid_is_uniform_over_cells():
    a = Archive()
    for i in range(4):
        a.add(e(f"c{i}", 0.5, 10**2.1, depth=i + 1))
    rng = np.random.default_rng(3)
    counts = {}
    for _ in range(800):
        cid = a.select("uniform_grid", 1, rng)[0].candidate_id
        counts[cid] = counts.get(cid, 0) + 1
    assert set(counts) == {"c0", "c1", "c2", "c3"} and min(counts.values()) > 150


def test_uniform_is_uniform_over_every_passing_entry():
    """Random search's parents: the weak ones that lost their cell and sit off the front are drawn as often."""
    a = Archive()
    for i in range(4):
        a.add(e(f"c{i}", 0.5 + i / 10, 10**2.1))  # one cell, and each one dominates the one before
    assert len(a.elites()) == len(a.front()) == 1
    rng = np.random.default_rng(3)
    counts = {}
    for _ in range(800):
        cid = a.select(UNIFORM, 1, rng)[0].candidate_id
        counts[cid] = counts.get(cid, 0) + 1
    assert set(counts) == {"c0", "c1", "c2", "c3"} and min(counts.values()) > 150


def test_pareto_prefers_less_crowded():
    a = Archive()
    # a dense cluster in the middle of the front, two lonely points at its ends
    a.add(e("lo", 0.50, 100))
    for i in range(6):
        a.add(e(f"m{i}", 0.80 + i * 0.001, 10_000 + i * 10))
    a.add(e("hi", 0.99, 1_000_000))
    assert len(a.front()) == 8
    rng = np.random.default_rng(0)
    counts = {}
    for _ in range(500):
        cid = a.select("pareto", 1, rng)[0].candidate_id
        counts[cid] = counts.get(cid, 0) + 1
    middle = np.mean([counts.get(f"m{i}", 0) for i in range(1, 5)])
    assert counts["lo"] > middle and counts["hi"] > middle


def test_state_round_trip_then_continue():
    a = filled(20)
    b = Archive()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    more = filled(40, seed=1).all_entries
    for x in more:
        a.add(Entry("x" + x.candidate_id, x.metrics, x.reward, x.depth))
        b.add(Entry("x" + x.candidate_id, x.metrics, x.reward, x.depth))
    assert a.state_dict() == b.state_dict()
    assert a.front() == b.front() and a.elites() == b.elites()
    for s in SELECTORS:
        assert a.select(s, 4, np.random.default_rng(5)) == b.select(s, 4, np.random.default_rng(5))
