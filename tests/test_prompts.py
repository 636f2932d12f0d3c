"""Every template renders strictly; the rendered prompts carry the spec, the parents and the failure."""

from __future__ import annotations

import pytest

from llmnas.llm import prompts
from llmnas.llm.prompts import PromptError, format_metrics, format_spec, render
from llmnas.task.spec import TaskSpec

SPEC = TaskSpec(
    text="classify 8x8 digits; under 20k parameters; under 1 ms on CPU; must be quantisable",
    num_classes=10,
    input_shape=(1, 8, 8),
    modality="image",
    max_params=20_000,
    max_latency_ms=1.0,
    max_flops=3_000_000,
    target_params=10_000,
    target_latency_ms=0.5,
    hints=("tiny",),
    notes=("must be quantisable",),
)
CODE = "import torch.nn as nn\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(64, num_classes)\n"

SAMPLES = {
    "system": {},
    "contract": {"allowed_imports": "torch, math"},
    "generate": {"spec": format_spec(SPEC), "contract": "CONTRACT"},
    "mutate": {
        "spec": "S",
        "contract": "C",
        "parent_code": CODE,
        "parent_metrics": "val_acc=0.9",
        "instruction": "widen it",
    },
    "crossover": {
        "spec": "S",
        "contract": "C",
        "parent_a_code": "A",
        "parent_a_metrics": "a=1",
        "parent_b_code": "B",
        "parent_b_metrics": "b=2",
    },
    "simplify": {"spec": "S", "contract": "C", "parent_code": CODE, "parent_metrics": "params=12,000"},
    "repair": {
        "spec": "S",
        "contract": "C",
        "code": CODE,
        "stage": "shape",
        "message": "mat1 and mat2 shapes",
    },
    "spec_extraction": {"text": "classify digits", "schema": '{"type": "object"}'},
    "instruction_evolution": {"instructions": "- score 0.9 (3 trials): widen", "count": 3},
    # Completion mode (base models): the start of a Python file; parents and failures come as comments.
    "completion_contract": {"allowed_imports": "torch, math"},
    "completion_head": {},
    "completion_generate": {"spec": "S", "contract": "C", "head": "class Model:"},
    "completion_mutate": {
        "spec": "S",
        "contract": "C",
        "head": "class Model:",
        "parent_code": "# import torch",
        "parent_metrics": "val_acc=0.9",
        "instruction": "widen it",
    },
    "completion_simplify": {
        "spec": "S",
        "contract": "C",
        "head": "class Model:",
        "parent_code": "# import torch",
        "parent_metrics": "params=12,000",
    },
    "completion_crossover": {
        "spec": "S",
        "contract": "C",
        "head": "class Model:",
        "parent_a_code": "# A",
        "parent_a_metrics": "a=1",
        "parent_b_code": "# B",
        "parent_b_metrics": "b=2",
    },
    "completion_repair": {
        "spec": "S",
        "contract": "C",
        "head": "class Model:",
        "code": "# import torch",
        "stage": "shape",
        "message": "# mat1 and mat2 shapes",
    },
}


def test_every_template_has_a_sample_and_renders():
    assert set(prompts.names()) == set(SAMPLES)
    for name in prompts.names():
        text = render(name, **SAMPLES[name])
        assert text.strip() and "$" not in text, name
        for value in SAMPLES[name].values():
            assert str(value) in text, (name, value)


def test_missing_variable_raises_naming_it():
    values = dict(SAMPLES["mutate"])
    del values["instruction"]
    with pytest.raises(PromptError, match="instruction"):
        render("mutate", **values)


def test_extra_variable_raises_naming_it():
    with pytest.raises(PromptError, match="temperature"):
        render("generate", **SAMPLES["generate"], temperature=0.7)


def test_unknown_template_raises():
    with pytest.raises(PromptError, match="no prompt template 'nope'"):
        render("nope")


def test_generate_shows_spec_limits_contract_and_format():
    contract = render("contract", allowed_imports="math, torch, torch.nn")
    text = render("generate", spec=format_spec(SPEC), contract=contract)
    for needle in (
        "20,000 parameters",
        "1 ms latency",
        "3,000,000 FLOPs",
        "about 10,000 parameters",
        "about 0.5 ms",
        "1x8x8",
        "number of classes: 10",
        "modality: image",
        "must be quantisable",
        "tiny",
        "build_model(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module",
        "math, torch, torch.nn",
        "No I/O",
        "```python",
    ):
        assert needle in text, needle


def test_spec_without_limits_says_none():
    text = format_spec(TaskSpec(text="classify"))
    assert "hard limits (a model over any one is rejected): none" in text
    assert "input shape (without batch): not given" in text


def test_parent_code_metrics_and_repair_error_appear():
    metrics = format_metrics({"val_acc": 0.93123, "params": 12345, "latency_ms": 0.4123}, reward=0.8)
    assert metrics == "val_acc=0.9312, params=12,345, latency_ms=0.4123, reward=0.8"
    assert format_metrics({}) == "not evaluated yet"
    mutate = render("mutate", **{**SAMPLES["mutate"], "parent_metrics": metrics})
    assert CODE.strip() in mutate and "val_acc=0.9312" in mutate and "widen it" in mutate
    repair = render("repair", **SAMPLES["repair"])
    assert "stage: shape" in repair and "mat1 and mat2 shapes" in repair and CODE.strip() in repair


def test_values_with_dollars_and_braces_are_not_reinterpreted():
    text = render("repair", **{**SAMPLES["repair"], "message": "KeyError: '$spec' {x}"})
    assert "KeyError: '$spec' {x}" in text
