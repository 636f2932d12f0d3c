"""LLMProposer and spec_from_llm against the loopback OpenAI-compatible server; the instruction archive."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes.openai_server import FakeOpenAI, error, ok

from llmnas.candidate.checks import normalise
from llmnas.llm.chat import BudgetExhausted, EndpointDown, OpenAIChat
from llmnas.llm.spec_reader import json_object, spec_from_llm
from llmnas.llm.usage import UsageMeter
from llmnas.propose.base import Action, Parent
from llmnas.propose.instructions import DEFAULT_INSTRUCTIONS, InstructionArchive
from llmnas.propose.llm import LLMProposer
from llmnas.task.spec import TaskSpec

SPEC = TaskSpec(
    text="classify 8x8 digits into 10 classes; under 20k parameters; under 1 ms on CPU",
    num_classes=10,
    input_shape=(1, 8, 8),
    modality="image",
    max_params=20_000,
    max_latency_ms=1.0,
)
CODE = """import torch
import torch.nn as nn


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))
"""
GOOD = f"Here is a compact MLP.\n\n```python\n{CODE}```\n"
# Parents come from the archive as the static checks normalised them; prompts show them minimised,
# which leaves normalised code without strings as it is.
PARENT_A = Parent(
    "aaa111", normalise(CODE.replace("32", "48")), {"val_acc": 0.91, "params": 3_610}, reward=0.9
)
PARENT_B = Parent("bbb222", normalise(CODE.replace("nn.ReLU()", "nn.GELU()")), {"val_acc": 0.88}, reward=0.85)
BROKEN = Parent(
    "ccc333",
    normalise(CODE.replace("64", "65")),
    stage="shape",
    message="mat1 and mat2 shapes cannot be multiplied",
)
RNG = np.random.default_rng(0)


@pytest.fixture
def server():
    with FakeOpenAI(default=ok(GOOD)) as s:
        yield s


def chat_for(server: FakeOpenAI) -> OpenAIChat:
    return OpenAIChat("fake-model", base_url=server.url, timeout_s=5, max_retries=2, backoff_s=0.01)


def test_good_fenced_reply_gives_code_and_trace(server):
    server.script(ok(GOOD, prompt_tokens=300, completion_tokens=90))
    p = LLMProposer(chat_for(server)).propose(Action("generate", temperature=0.2), [], SPEC, RNG)
    assert p.code is not None and "def build_model" in p.code and p.stage is None
    assert p.reply == GOOD and p.usage == {"prompt_tokens": 300, "completion_tokens": 90}
    assert p.prompt == server.user_prompts()[0] and p.parent_ids == ()
    body = server.requests[0]["body"]
    assert body["temperature"] == 0.2 and body["n"] == 1 and body["messages"][0]["role"] == "system"


def test_prose_reply_is_an_extract_failure(server):
    server.script(ok("I would use a small convolutional network with two layers."))
    p = LLMProposer(chat_for(server)).propose(Action("generate"), [], SPEC, RNG)
    assert p.code is None and p.stage == "extract" and p.message
    assert p.reply.startswith("I would use")


def test_server_error_storm_is_an_llm_failure_not_an_exception(server):
    server.default = error(500, "overloaded")
    p = LLMProposer(chat_for(server)).propose(Action("mutate", variant="widen"), [PARENT_A], SPEC, RNG)
    assert p.code is None and p.stage == "llm" and "HTTP 500" in p.message
    assert p.parent_ids == ("aaa111",) and len(server.requests) == 3


def test_empty_reply_is_an_llm_failure(server):
    server.script(ok(""))
    p = LLMProposer(chat_for(server)).propose(Action("generate"), [], SPEC, RNG)
    assert p.code is None and p.stage == "llm" and "empty" in p.message


def test_budget_exhausted_propagates(server):
    meter = UsageMeter(chat_for(server), max_tokens=1)
    proposer = LLMProposer(meter)
    proposer.propose(Action("generate"), [], SPEC, RNG)
    with pytest.raises(BudgetExhausted):
        proposer.propose(Action("generate"), [], SPEC, RNG)


def test_generate_prompt_shows_spec_contract_and_allowed_imports(server):
    LLMProposer(chat_for(server), allowed_imports=frozenset({"torch", "math"})).propose(
        Action("generate"), [PARENT_A], SPEC, RNG
    )
    prompt = server.user_prompts()[0]
    assert "at most 20,000 parameters" in prompt and "at most 1 ms latency" in prompt and "1x8x8" in prompt
    assert "Imports allowed, and nothing else: math, torch." in prompt and "build_model(" in prompt
    assert PARENT_A.code.strip() not in prompt


def test_mutate_prompt_shows_parent_metrics_and_the_variant_instruction(server):
    proposer = LLMProposer(chat_for(server))
    p = proposer.propose(Action("mutate", variant="residual"), [PARENT_A, PARENT_B], SPEC, RNG)
    prompt = server.user_prompts()[0]
    assert PARENT_A.code.strip() in prompt and PARENT_B.code.strip() not in prompt
    assert "val_acc=0.91, params=3,610, reward=0.9" in prompt
    assert proposer.instructions.get("residual").text in prompt
    assert "instruction=residual" in p.notes and p.parent_ids == ("aaa111",)


def test_unknown_variant_picks_an_instruction_from_the_archive(server):
    p = LLMProposer(chat_for(server)).propose(Action("mutate", variant="default"), [PARENT_A], SPEC, RNG)
    (note,) = [n for n in p.notes if n.startswith("instruction=")]
    assert note.removeprefix("instruction=") in dict(DEFAULT_INSTRUCTIONS)


def test_crossover_prompt_shows_both_parents(server):
    p = LLMProposer(chat_for(server)).propose(Action("crossover"), [PARENT_A, PARENT_B], SPEC, RNG)
    prompt = server.user_prompts()[0]
    assert PARENT_A.code.strip() in prompt and PARENT_B.code.strip() in prompt
    assert "val_acc=0.88" in prompt and p.parent_ids == ("aaa111", "bbb222")


def test_crossover_with_one_parent_falls_back_to_mutate(server):
    p = LLMProposer(chat_for(server)).propose(Action("crossover", variant="dropout"), [PARENT_A], SPEC, RNG)
    assert "Change to make" in server.user_prompts()[0]
    assert p.action.operator == "crossover" and any("fell back to mutate" in n for n in p.notes)


def test_simplify_and_repair_prompts(server):
    proposer = LLMProposer(chat_for(server))
    proposer.propose(Action("simplify"), [PARENT_A], SPEC, RNG)
    proposer.propose(Action("repair"), [BROKEN], SPEC, RNG)
    simplify, repair = server.user_prompts()
    assert (
        "Fewer parameters and lower latency, same accuracy" in simplify and PARENT_A.code.strip() in simplify
    )
    assert "stage: shape" in repair and "mat1 and mat2 shapes cannot be multiplied" in repair
    assert BROKEN.code.strip() in repair


def test_operators_needing_parents_fall_back_to_generate(server):
    p = LLMProposer(chat_for(server)).propose(Action("repair"), [], SPEC, RNG)
    assert "Design a new neural network" in server.user_prompts()[0] and p.code is not None


def test_learn_credits_the_instruction_used(server):
    proposer = LLMProposer(chat_for(server))
    mutated = proposer.propose(Action("mutate", variant="widen"), [PARENT_A], SPEC, RNG)
    generated = proposer.propose(Action("generate", variant="widen"), [], SPEC, RNG)
    proposer.learn(mutated, 0.8)
    proposer.learn(generated, 0.1)
    widen = proposer.instructions.get("widen")
    assert (widen.count, widen.mean) == (1, pytest.approx(0.8))


def test_archive_scores_choice_and_state_round_trip():
    archive = InstructionArchive([("a", "make it wider please"), ("b", "make it deeper please")])
    rng = np.random.default_rng(1)
    first = archive.choose(rng)
    archive.update(first, 1.0)
    second = archive.choose(rng)
    assert second != first
    archive.update(second, 0.0)
    archive.update(second, 0.5)
    assert archive.get(second).mean == pytest.approx(0.25) and archive.best(1)[0].name == first
    archive.update("retired-long-ago", 1.0)
    state = json.loads(json.dumps(archive.state_dict()))
    copy = InstructionArchive([("x", "placeholder instruction")])
    copy.load_state_dict(state)
    assert copy.state_dict() == archive.state_dict() and copy.names() == ("a", "b")


def test_evolve_adds_new_instructions_and_retires_the_worst(server):
    archive = InstructionArchive(capacity=9, min_trials=2)
    for i, name in enumerate(archive.names()):
        for _ in range(2):
            archive.update(name, i / 10)
    server.script(
        ok(
            "1. Add a squeeze-and-excitation block after each convolution stage.\n"
            "- Widen the network: give its main layers about 1.5x more channels or hidden units.\n"
            "\n"
            "* Replace the flatten and linear head with global average pooling and one linear layer.\n"
            "Use a stride-2 convolution as the stem to downsample early.\n"
        )
    )
    added = archive.evolve(chat_for(server), np.random.default_rng(0), k=3, count=3)
    prompt = server.user_prompts()[0]
    assert "score 0.7000 (2 trials)" in prompt and "Write 3 new mutation instructions" in prompt
    assert "score 0.0000" not in prompt
    assert added == ["evolved-1", "evolved-2", "evolved-3"]
    assert "squeeze-and-excitation" in archive.get("evolved-1").text
    assert "global average pooling" in archive.get("evolved-2").text
    assert len(archive) == 9 and "widen" not in archive and "deepen" not in archive and "residual" in archive
    assert set(added) <= set(archive.names())


def test_evolve_failure_adds_nothing(server):
    server.default = error(500)
    archive = InstructionArchive()
    assert archive.evolve(chat_for(server), np.random.default_rng(0)) == []
    assert archive.names() == tuple(dict(DEFAULT_INSTRUCTIONS))


REQUIREMENTS = "classify 8x8 grayscale digits into 10 classes; under 20k parameters; under 1 ms on CPU"


def test_spec_from_llm_good_json_in_prose(server):
    reply = {
        "num_classes": 10,
        "input_shape": [1, 8, 8],
        "modality": "image",
        "max_params": 20000,
        "max_latency_ms": 1.0,
        "max_flops": None,
    }
    server.script(ok(f"Sure! Here it is:\n```json\n{json.dumps(reply)}\n```\nHope this helps."))
    spec, warnings = spec_from_llm(REQUIREMENTS, chat_for(server))
    assert warnings == []
    assert spec.input_shape == (1, 8, 8) and spec.modality == "image" and spec.max_params == 20_000
    assert spec.text == REQUIREMENTS
    prompt = server.user_prompts()[0]
    assert REQUIREMENTS in prompt and '"max_params"' in prompt and '"reward_alpha"' not in prompt


def test_spec_from_llm_wrong_numbers_trust_the_rules(server):
    server.script(ok('{"num_classes": 10, "max_params": 2000, "max_latency_ms": 1, "colour": "blue"}'))
    spec, warnings = spec_from_llm(REQUIREMENTS, chat_for(server))
    assert spec.max_params == 20_000 and spec.max_latency_ms == 1.0
    assert any("max_params: the model said 2000, the text says 20000" in w for w in warnings)
    assert any("colour" in w for w in warnings)


def test_spec_from_llm_fills_numbers_the_model_left_out(server):
    server.script(ok('{"modality": "image"}'))
    spec, warnings = spec_from_llm(REQUIREMENTS, chat_for(server))
    assert (spec.num_classes, spec.max_params, spec.modality) == (10, 20_000, "image")
    assert any("num_classes: the model said nothing" in w for w in warnings)


@pytest.mark.parametrize(
    "reply, reason",
    [
        (ok("I cannot help with that."), "no JSON object"),
        (ok('{"num_classes": 1, "task": "classification"}'), "invalid"),
        (ok('{"task": "detection"}'), "invalid"),
        (error(404), "rule-based parser"),
    ],
)
def test_spec_from_llm_falls_back_to_rules(server, reply, reason):
    server.default = reply
    spec, warnings = spec_from_llm(REQUIREMENTS, chat_for(server))
    assert spec.max_params == 20_000 and spec.num_classes == 10
    assert len(warnings) == 1 and reason in warnings[0]


def test_spec_from_llm_keeps_the_task_the_text_names(server):
    server.default = ok('{"task": "regression", "num_classes": 1, "max_params": 20000, "max_latency_ms": 1}')
    spec, warnings = spec_from_llm(REQUIREMENTS, chat_for(server))
    assert spec.task == "classification" and spec.num_classes == 10
    assert "task: the model said regression, the text says classification" in warnings[0]


def test_spec_from_llm_stops_on_bad_credentials(server):
    server.default = error(401, "Incorrect API key provided")
    with pytest.raises(EndpointDown, match="credentials"):
        spec_from_llm(REQUIREMENTS, chat_for(server))


def test_json_object_finds_the_first_object():
    assert json_object('prose {"a": {"b": 1}} more {"c": 2}') == {"a": {"b": 1}}
    assert json_object('```\n[1, 2]\n```\nthen {"x": 1}') == {"x": 1}
    assert json_object("{broken") is None


def test_scale_is_a_code_transformation_without_a_model_call():
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"the model was asked ({name})")

    p = LLMProposer(NoCalls()).propose(Action("scale"), [PARENT_A], SPEC, RNG)
    assert p.stage is None and p.parent_ids == ("aaa111",) and p.notes[0].startswith("scale: phi ")
    assert p.code != PARENT_A.code and "nn.Linear(64, " in p.code
