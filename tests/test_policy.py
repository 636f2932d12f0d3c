import json

import numpy as np
import pytest

from llmnas.engine.archive import SELECTORS
from llmnas.engine.policy import TEMPERATURES, Policy
from llmnas.propose.base import Operator


def run(policy, rng, steps, favour="mutate"):
    actions = []
    for _ in range(steps):
        a = policy.choose(rng, tuple(Operator), ["v0", "v1"])
        policy.update(a, 1.0 if a.operator == favour else 0.0)
        actions.append(a)
    return actions


def test_initial_probabilities_uniform():
    p = Policy().probabilities()
    assert p["operator"] == pytest.approx(dict.fromkeys(Operator, 1 / len(Operator)))
    assert p["temperature"] == pytest.approx({f"{t:g}": 0.25 for t in TEMPERATURES})
    assert p["selector"] == pytest.approx(dict.fromkeys(SELECTORS, 0.25))
    assert p["variant"] == {}


def test_learns_the_favoured_operator():
    pol = Policy()
    run(pol, np.random.default_rng(0), 200)
    p = pol.probabilities()["operator"]
    assert p["mutate"] > 0.6
    assert all(p[o] > 2e-4 for o in Operator)  # the entropy term keeps every option alive
    s = pol.stats()
    assert s["mutate"]["mean_reward"] == 1.0 and s["mutate"]["count"] > 50
    assert sum(v["count"] for v in s.values()) == 200


def test_choose_respects_availability():
    pol = Policy()
    rng = np.random.default_rng(0)
    ops = [pol.choose(rng, ["generate", "mutate"], ["v"]).operator for _ in range(100)]
    assert set(ops) == {"generate", "mutate"}
    with pytest.raises(ValueError):
        pol.choose(rng, ["fly"], ["v"])
    with pytest.raises(ValueError):
        pol.choose(rng, ["generate"], [])


def test_masked_update_only_moves_available_operators():
    pol = Policy()
    rng = np.random.default_rng(0)
    pol.update(pol.choose(rng, tuple(Operator), ["v"]), 0.0)  # sets the baseline
    a = pol.choose(rng, ["generate", "mutate"], ["v"])
    before = pol.probabilities()["operator"]
    pol.update(a, 1.0)
    after = pol.probabilities()["operator"]
    assert after[a.operator] > before[a.operator]
    assert after["repair"] / after["crossover"] == pytest.approx(before["repair"] / before["crossover"])


def test_variants_optimistic_start_and_retirement():
    pol = Policy()
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = pol.choose(rng, ["generate"], ["a", "b"])
        pol.update(a, 1.0 if a.variant == "a" else 0.0)
    p = pol.probabilities()["variant"]
    assert p["a"] > p["b"]
    pol.choose(rng, ["generate"], ["a", "c"])  # b retires, c is new
    p = pol.probabilities()["variant"]
    assert set(p) == {"a", "c"} and p["c"] > p["a"]
    pol.update(pol.choose(rng, ["generate"], ["c"]), 0.5)  # retired "a" is gone; updates still work
    assert set(pol.probabilities()["variant"]) == {"c"}


def test_deterministic_given_seed():
    a1 = run(Policy(), np.random.default_rng(42), 60)
    a2 = run(Policy(), np.random.default_rng(42), 60)
    assert a1 == a2
    assert {a.temperature for a in a1} <= set(TEMPERATURES)
    assert {a.selector for a in a1} <= set(SELECTORS)


def test_state_round_trip_then_continue_equals_uninterrupted():
    full, rng_full = Policy(), np.random.default_rng(3)
    run(full, rng_full, 40)
    # a choice still in flight when the checkpoint is taken
    pending = full.choose(rng_full, ["generate", "repair"], ["v0", "v1"])

    part, rng_part = Policy(), np.random.default_rng(3)
    run(part, rng_part, 40)
    assert part.choose(rng_part, ["generate", "repair"], ["v0", "v1"]) == pending
    text = json.dumps(part.state_dict())
    assert '"operator": [["generate", ' in text  # operators written as plain strings
    assert f'"pending": [["{pending.operator}", ["generate", "repair"]]]' in text
    state = json.loads(text)
    rng_state = rng_part.bit_generator.state
    resumed = Policy()
    resumed.load_state_dict(state)
    rng_resumed = np.random.default_rng()
    rng_resumed.bit_generator.state = rng_state

    full.update(pending, 0.7)
    resumed.update(pending, 0.7)
    assert run(full, rng_full, 40) == run(resumed, rng_resumed, 40)
    assert full.state_dict() == resumed.state_dict()
    assert full.probabilities() == resumed.probabilities()
    assert full.stats() == resumed.stats()
