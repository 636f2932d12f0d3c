"""Round size follows the executor's capacity, asked at the start of every round (a Ray cluster's room
changes as nodes join and leave), and a resumed round is replayed at the size it was logged with."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from conftest import FAST_TRAIN, GOOD_CNN, SANDBOX_LIMITS, logged
from fakes.list_proposer import ListProposer

from llmnas.config import RunConfig
from llmnas.engine.loop import REPROPOSALS, Search
from llmnas.engine.policy import TEMPERATURES
from llmnas.propose.offline import OfflineProposer
from llmnas.runs.store import RunStore
from llmnas.task.requirements import parse_requirements

REQ = "classify 8x8 digits into 10 classes; under 20k parameters"


class Elastic:
    """The shared pool behind a capacity that changes from round to round, as a cluster's does; it can
    stop the run (as Ctrl-C would) at its first submit."""

    def __init__(self, pool, capacities: list[int], interrupt: bool = False):
        self.pool, self.capacities, self.interrupt = pool, list(capacities), interrupt
        self.data_dir, self.device = pool.data_dir, pool.device
        self.submitted = 0

    def capacity(self) -> int:
        return self.capacities.pop(0) if len(self.capacities) > 1 else self.capacities[0]

    def submit(self, job, out_dir):
        if self.interrupt:
            raise KeyboardInterrupt
        self.submitted += 1
        return self.pool.submit(job, out_dir)


def _search(folder, digits, executor, store=None) -> Search:
    cfg = RunConfig(requirements=REQ, data="digits", seed=5, train=FAST_TRAIN, limits=SANDBOX_LIMITS)
    spec = parse_requirements(REQ).resolve(
        input_shape=digits.input_shape, num_classes=digits.num_classes, modality=digits.modality
    )
    if store is None:
        store = RunStore.create(
            folder, {"config": cfg.model_dump(mode="json"), "spec": spec.model_dump(mode="json")}, REQ
        )
    proposer = OfflineProposer(spec.modality, cfg.seed)
    return Search(cfg, spec, digits, proposer, executor, store, progress=False)


def _sizes(folder) -> dict[int, int]:
    """Proposals per round, from the log."""
    return dict(Counter(e["round"] for e in logged(folder) if e["type"] == "proposal"))


def test_rounds_follow_the_executors_capacity(pool, digits, tmp_path):
    search = _search(tmp_path / "run", digits, Elastic(pool, [3, 1, 2]))
    search.run(6)
    search.store.close()
    assert _sizes(tmp_path / "run") == {0: 3, 1: 1, 2: 2}
    logged_sizes = {
        (e["round"], e["round_size"]) for e in logged(tmp_path / "run") if e["type"] == "proposal"
    }
    assert logged_sizes == {(0, 3), (1, 1), (2, 2)}


def test_a_resumed_round_keeps_the_size_it_was_logged_with(pool, digits, tmp_path):
    folder = tmp_path / "run"
    first = _search(folder, digits, Elastic(pool, [3], interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        first.run(4)
    first.store.close()
    assert _sizes(folder) == {0: 3}  # proposed, then stopped before any evaluation
    smaller = Elastic(pool, [1])  # the cluster shrank meanwhile
    resumed = _search(folder, digits, smaller, RunStore.open(folder))
    resumed.run(4)
    resumed.store.close()
    assert _sizes(folder) == {0: 3, 1: 1}  # round 0 replayed at 3 (not logged again), then rounds of 1
    assert smaller.submitted == 4
    evaluated = [e["round"] for e in logged(folder) if e["type"] == "evaluation"]
    assert Counter(evaluated) == {0: 3, 1: 1}


def test_a_duplicate_is_asked_again_hotter_each_time(pool, digits, tmp_path):
    search = _search(tmp_path / "run", digits, Elastic(pool, [2]))
    search.proposer = model = ListProposer([GOOD_CNN])  # a model that repeats itself whatever it is asked
    search.run(2)
    search.store.close()
    proposals = [e for e in logged(tmp_path / "run") if e["type"] == "proposal"]
    # slot 0 is new; slot 1 repeats it, is asked again REPROPOSALS times, and the last repeat counts
    assert [p["stage"] for p in proposals] == [None] + ["duplicate"] * (REPROPOSALS + 1)
    assert [p["temperature"] for p in proposals] == model.temperatures
    again = model.temperatures[1:]
    top = max(TEMPERATURES)
    for before, after in itertools.pairwise(again):
        assert after > before or after == before == top, again  # each ask hotter than the repeat before it
    assert again[-1] == top  # three steps up the grid from any start
