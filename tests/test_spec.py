"""Requirements text to TaskSpec: numbers, hints, notes for what is not understood, contradictions."""

import pytest

from llmnas.task.requirements import REFINED, parse_requirements
from llmnas.task.spec import SpecError, TaskSpec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "classify 8x8 grayscale digits into 10 classes; under 20k parameters; under 1 ms on CPU",
            {"num_classes": 10, "max_params": 20_000, "max_latency_ms": 1.0},
        ),
        ("<= 1M params", {"max_params": 1_000_000}),
        ("at most 1.5M parameters, latency under 500 us", {"max_params": 1_500_000, "max_latency_ms": 0.5}),
        ("2ms on CPU", {"max_latency_ms": 2.0}),
        ("fewer than 50,000 parameters", {"max_params": 50_000}),
        ("under 50 MFLOPs", {"max_flops": 50_000_000}),
        ("below 2 GFLOPs", {"max_flops": 2_000_000_000}),
        ("under 10 MMACs", {"max_flops": 20_000_000}),
        ("recognise five categories", {"num_classes": 5}),
        # size and speed words are priorities; the size a word aims at is relative to the task (resolve)
        ("a tiny model", {"target_params": None, "size_word": "tiny", "priorities": ("size",)}),
        ("small and fast please", {"target_params": None, "priorities": ("size", "latency")}),
        ("tiny, under 5k parameters", {"max_params": 5_000, "priorities": ("size",)}),
        ("a 3k-parameter cap", {"max_params": 3_000}),
        ("parameter budget of 40k", {"max_params": 40_000}),
        ("a limit of 2M weights", {"max_params": 2_000_000}),
        ("under 100 KB", {"max_params": 25_000, "max_bytes": 100_000}),  # float32 weights: 4 bytes each
        ("model size under 2 MiB", {"max_params": 524_288}),
        ("under 20k parameters under 1 ms", {"max_params": 20_000, "max_latency_ms": 1.0}),
        ("under 20k parameters; under 20,000 params again", {"max_params": 20_000}),  # the same limit twice
        ("classify 8x8 images, under 5k params", {"max_params": 5_000}),
    ],
)
def test_parses_numbers_and_hints(text, expected):
    spec = parse_requirements(text)
    for key, value in expected.items():
        assert getattr(spec, key) == value, (key, spec)


def test_unparsed_text_stays_verbatim_in_notes():
    spec = parse_requirements("classify digits, under 20k parameters; use GELU everywhere. Make it pretty")
    assert spec.max_params == 20_000
    assert "use GELU everywhere" in spec.not_understood
    assert "Make it pretty" in spec.not_understood
    assert "not understood" in spec.summary() and "use GELU everywhere" in spec.summary()


def test_empty_requirements_is_a_clear_error():
    with pytest.raises(SpecError, match="requirements text is empty"):
        parse_requirements("   ")


def test_resolve_fills_shape_and_classes_from_the_data():
    spec = parse_requirements("classify, under 20k parameters").resolve(
        input_shape=(1, 8, 8), num_classes=10, modality="image"
    )
    assert (spec.input_shape, spec.num_classes, spec.modality) == ((1, 8, 8), 10, "image")


def test_contradiction_with_the_data_is_an_error_naming_both_numbers():
    spec = parse_requirements("classify into 5 classes")
    with pytest.raises(SpecError, match=r"5 classes but the data has 10"):
        spec.resolve(input_shape=(1, 8, 8), num_classes=10, modality="image")


def test_spec_is_frozen_and_rejects_unknown_fields():
    with pytest.raises(ValueError):
        TaskSpec(max_params=-3)
    with pytest.raises(ValueError):
        TaskSpec(colour="blue")


@pytest.mark.parametrize(
    ("text", "first", "second"),
    [
        ("under 5k parameters; under 50k parameters", "under 5k parameters", "under 50k parameters"),
        ("under 1 ms; latency under 3 ms", "under 1 ms", "latency under 3 ms"),
        ("under 10 MFLOPs, below 2 GFLOPs", "under 10 MFLOPs", "below 2 GFLOPs"),
        ("under 20k params; under 1 MB", "under 20k params", "under 1 MB"),
        ("under 1k but at least 1M params", "at least 1M", "under 1k"),
    ],
)
def test_conflicting_limits_are_an_error_naming_both_clauses(text, first, second):
    with pytest.raises(SpecError, match="conflicting") as error:
        parse_requirements(text)
    message = str(error.value).lower()
    assert first.lower().split()[-1] in message and second.lower().split()[-1] in message, message


def test_a_lower_bound_under_the_limit_is_kept_as_a_note():
    spec = parse_requirements("under 50k params; at least 10k params")
    assert spec.max_params == 50_000 and any("at least 10k params" in line for line in spec.not_understood)


def test_a_size_limit_says_how_it_became_parameters():
    spec = parse_requirements("classify digits under 100 KB")
    assert spec.max_params == 25_000 and "params <= 25,000" in spec.summary() and "100 KB" in spec.summary()


def test_a_refinement_replaces_the_limits_it_sets_and_keeps_the_rest():
    spec = parse_requirements(
        f"classify digits; under 20k parameters; under 2 ms; use GELU{REFINED}fewer than 15k parameters"
    )
    assert spec.max_params == 15_000 and spec.max_latency_ms == 2.0 and "use GELU" in spec.not_understood
    with pytest.raises(SpecError, match="conflicting"):  # within one refinement it is still a conflict
        parse_requirements(f"classify digits{REFINED}under 5k params; under 50k params")
