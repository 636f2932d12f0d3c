"""The model handed back follows the words: limits, then floors, then priorities with a tolerance."""

import pytest

from llmnas.engine.choice import choose, meets_floors
from llmnas.engine.reward import reward
from llmnas.task.requirements import REFINED, parse_requirements
from llmnas.task.spec import TaskSpec

# The penguins case of issue 28: a 99,635-parameter model and a 3,315-parameter one tie on validation.
CANDIDATES = [
    {"id": "big", "val_acc": 1.0, "val_loss": 0.01, "params": 99_635, "latency_ms": 0.90},
    {"id": "small", "val_acc": 1.0, "val_loss": 0.05, "params": 3_315, "latency_ms": 0.30},
    {"id": "tiny", "val_acc": 0.996, "val_loss": 0.08, "params": 420, "latency_ms": 0.20},
    {"id": "weak", "val_acc": 0.95, "val_loss": 0.30, "params": 60, "latency_ms": 0.05},
    {"id": "fast", "val_acc": 0.97, "val_loss": 0.20, "params": 9_000, "latency_ms": 0.01},
]


def chosen(text: str, candidates=CANDIDATES, **update) -> tuple[list[str], str]:
    spec = parse_requirements(text).model_copy(update=update)
    picked = choose(candidates, lambda c: c, spec)
    return [candidates[i]["id"] for i in picked.order], picked.why


def test_without_priorities_the_best_validation_score_wins_then_the_lower_loss():
    order, why = chosen("classify the penguins")
    assert order[0] == "big" and "best validation score" in why


def test_small_model_hands_back_the_smallest_within_the_tolerance_of_the_best():
    order, why = chosen("predict the penguin species from its measurements; small model")
    assert order[0] == "tiny"  # 0.996 is within 0.5 pt of 1.000; 420 params beat 3,315
    assert "420 params" in why and "smallest" in why and "0.5 pt" in why
    order, why = chosen("small model", tolerance=0.001)
    assert order[0] == "small" and "0.1 pt" in why  # a tighter tolerance: 0.996 no longer qualifies
    assert order.index("big") < order.index("weak")  # the rest keep the quality order


def test_a_floor_replaces_the_tolerance():
    order, why = chosen("the smallest model that gets 95%")
    assert order[0] == "weak" and "accuracy >= 0.95" in why
    order, _ = chosen("as small as possible while above 97%")
    assert order[0] == "tiny"


def test_no_candidate_meeting_the_floors_says_so_and_keeps_the_best():
    below = [c for c in CANDIDATES if c["val_acc"] < 1]
    order, why = chosen("at least 99.9% accuracy; small model", below)
    assert order[0] == "tiny" and "no candidate meets accuracy >= 0.999" in why


def test_candidates_meeting_the_floors_come_before_the_rest_whatever_the_priority():
    order, _ = chosen(
        "F1 above 0.9",
        [{"id": "a", "val_acc": 0.99, "params": 5}, {"id": "b", "val_acc": 0.9, "val_f1": 0.95}],
    )
    assert order == ["b", "a"]  # a has no F1: it does not meet the floor
    assert not meets_floors({"val_acc": 0.99}, parse_requirements("F1 above 0.9"))


def test_latency_first_hands_back_the_fastest_within_the_tolerance():
    order, why = chosen("latency matters more than accuracy", tolerance=0.05)
    assert order[0] == "fast" and "fastest" in why and "0.010 ms" in why
    order, _ = chosen("latency matters more than accuracy")  # 0.5 pt: "fast" (0.97) is too far behind
    assert order[0] == "tiny"


def test_accuracy_first_then_size_breaks_ties_by_size():
    order, why = chosen("accuracy first, then size")
    assert order[:2] == ["small", "big"] and "ties: smallest" in why


def test_a_refinement_that_changes_priorities_changes_the_choice_and_the_reward():
    before = parse_requirements("classify the penguins")
    after = parse_requirements(f"classify the penguins{REFINED}latency matters more than accuracy now")
    assert chosen(before.text)[0][0] == "big" and chosen(after.text)[0][0] == "tiny"
    spec = after.model_copy(update={"target_latency_ms": 0.1})
    slow, quick = CANDIDATES[0], CANDIDATES[2]
    assert reward(slow, before) > reward(quick, before)  # quality rewarded alone
    assert reward(quick, spec) > reward(slow, spec)  # then latency weighs


def test_size_words_aim_relative_to_the_task_never_at_a_fixed_count():
    small = parse_requirements("small model")
    penguins = small.resolve(input_shape=(6,), num_classes=3, modality="tabular")
    digits = small.resolve(input_shape=(1, 8, 8), num_classes=10, modality="image")
    assert penguins.target_params == 10 * (6 * 3 + 3) and digits.target_params == 10 * (64 * 10 + 10)
    capped = parse_requirements("small model, under 2k params").resolve(
        input_shape=(1, 8, 8), num_classes=10, modality="image"
    )
    assert capped.target_params == 2_000


def test_a_floor_of_the_other_task_is_a_clear_error():
    with pytest.raises(ValueError, match="accuracy floor but --data holds a regression target"):
        parse_requirements("at least 90% accuracy").resolve(
            input_shape=(4,), num_classes=1, modality="tabular", task="regression"
        )


def test_old_specs_load_with_their_targets_as_floors():
    spec = TaskSpec.model_validate({"task": "regression", "target_mae": 45.0, "notes": ["use GELU"]})
    assert spec.floors == {"mae": 45.0} and spec.not_understood == ("use GELU",)


def test_the_leaderboards_front_is_the_archives_front():
    """Without a latency goal neither ranks on latency (it moves with the machine's load); with one both do."""
    from llmnas.engine.loop import _entry, archive_for
    from llmnas.results.read import Candidate, front_ids
    from llmnas.runs.events import EvaluationEvent

    metrics = {
        "a": {"val_acc": 0.9, "params": 100, "latency_ms": 5.0},
        "b": {"val_acc": 0.9, "params": 200, "latency_ms": 1.0},
    }
    for text, expected in (("classify digits", {"a"}), ("classify digits, under 10 ms", {"a", "b"})):
        spec = parse_requirements(text)
        archive = archive_for(spec)
        for cid, m in metrics.items():
            archive.add(
                _entry(EvaluationEvent(round=0, candidate_id=cid, ok=True, metrics=m, reward=1.0), 1.0)
            )
        board = [
            Candidate(index=i, candidate_id=cid, metrics=m) for i, (cid, m) in enumerate(metrics.items())
        ]
        assert {e.candidate_id for e in archive.front()} == front_ids(board, spec) == expected
