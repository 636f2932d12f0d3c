"""Completion mode for base models: prompts as the start of a Python file, /v1/completions, the automatic
switch when a model has no chat template, GGUF loading errors. Loopback fake server and tiny HF model."""

from __future__ import annotations

import ast
import logging
import sys

import numpy as np
import pytest
from fakes.openai_server import FakeOpenAI, error, ok
from fakes.tiny_hf import build_tiny_hf

from llmnas.candidate.checks import DEFAULT_ALLOWED_IMPORTS
from llmnas.config import RunConfig
from llmnas.errors import UserError
from llmnas.llm import prompts
from llmnas.llm.backends import parse_llm
from llmnas.llm.chat import LLMError, NoChatTemplate, OpenAIChat, completion_mode
from llmnas.llm.local import HFChat, cut_at_stop, gguf_location
from llmnas.llm.replay import ReplayChat
from llmnas.llm.usage import UsageMeter
from llmnas.propose.base import Action, Parent
from llmnas.propose.llm import STOPS, LLMProposer, commented, docstring_safe, end_of_module
from llmnas.task.spec import TaskSpec

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "write a model"}]
SPEC = TaskSpec(
    text='classify 8x8 digits; under 20k parameters; a """quoted""" \\ note',
    num_classes=10,
    input_shape=(1, 8, 8),
    modality="image",
    max_params=20_000,
)
TEMPLATE_500 = "Cannot use chat template functions because tokenizer.chat_template is not set"
# What a base model writes after the prompt's `super().__init__()`: the rest of the class, then usage code.
BODY = (
    "\n        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))\n"
    "\n    def forward(self, x):\n        return self.net(x)\n\n\nnet = Model((1, 8, 8), 10)\nprint(net)\n"
)


@pytest.fixture(autouse=True)
def _no_real_endpoint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def chat(server: FakeOpenAI, **kw) -> OpenAIChat:
    options = {"timeout_s": 5.0, "max_retries": 2, "backoff_s": 0.01, **kw}
    return OpenAIChat("base-model", base_url=server.url, **options)


def test_auto_mode_switches_to_completions_once_when_the_model_has_no_chat_template(caplog):
    with FakeOpenAI(error(500, TEMPLATE_500), default=ok("continued")) as server:
        model = chat(server)
        assert model.mode == "chat" and not completion_mode(model)
        with caplog.at_level(logging.WARNING, "llmnas.llm.chat"), pytest.raises(NoChatTemplate):
            model.complete(MESSAGES, temperature=0.2)
        assert completion_mode(model)
        out = model.complete_text("def f():", temperature=0.2, max_tokens=9, stop=[*STOPS, "extra"])
        again = model.complete(MESSAGES, temperature=0.2)  # chat calls now go as a transcript
    assert out[0].text == "continued" and again[0].text == "continued"
    assert len(server.requests) == 3  # the 500 is not retried: it will not heal
    assert [r["path"] for r in server.requests] == [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/completions",
    ]
    body = server.requests[1]["body"]
    assert body["prompt"] == "def f():" and body["max_tokens"] == 9 and body["stop"] == STOPS
    assert server.requests[2]["body"]["prompt"].endswith("User: write a model\n\nAssistant:")
    assert sum("switching to completion mode" in r.message for r in caplog.records) == 1


def test_chat_mode_does_not_switch_and_says_which_flag_would():
    with FakeOpenAI(error(400, TEMPLATE_500)) as server:
        model = chat(server, mode="chat")
        with pytest.raises(LLMError, match="--llm-mode completion") as info:
            model.complete(MESSAGES, temperature=0.2)
    assert not isinstance(info.value, NoChatTemplate) and model.mode == "chat"


def test_other_server_errors_are_not_mistaken_for_a_missing_template():
    with FakeOpenAI(error(500, "upstream exploded"), ok("fine")) as server:
        model = chat(server)
        assert model.complete(MESSAGES, temperature=0.2)[0].text == "fine"
    assert model.mode == "chat"


def test_completion_mode_from_the_start_never_calls_chat():
    with FakeOpenAI(default=ok("x")) as server:
        model = parse_llm(f"{server.url}#base-model", mode="completion")
        model.complete(MESSAGES, temperature=0.0)
    assert server.requests[0]["path"] == "/v1/completions"


def test_mode_is_a_setting_with_a_flag_and_bad_values_are_user_errors():
    assert RunConfig(requirements="x").llm_mode == "auto"
    assert RunConfig.from_settings(requirements="x", llm_mode="completion").llm_mode == "completion"
    with pytest.raises(UserError, match="llm_mode"):
        RunConfig.from_settings(requirements="x", llm_mode="base")
    with pytest.raises(UserError, match="llm_mode"):
        parse_llm("http://127.0.0.1:9/v1#m", mode="base")


def test_proposer_writes_a_python_file_prefix_and_extracts_prefix_plus_continuation():
    with FakeOpenAI(error(500, TEMPLATE_500), default=ok(BODY)) as server:
        proposer = LLMProposer(chat(server))
        proposal = proposer.propose(Action("generate", temperature=0.7), [], SPEC, np.random.default_rng(0))
        sent = server.user_prompts()[-1]
    assert proposal.stage is None, proposal.message
    assert "completion mode" in proposal.notes
    prompt = proposal.prompt
    assert prompt == sent and prompt.startswith('"""') and prompt.rstrip().endswith("super().__init__()")
    assert "under 20k parameters" in prompt and "at most 20,000 parameters" in prompt
    ast.parse(prompt + "\n        pass\n")  # a well-formed start of a file: the quotes in the spec are safe
    assert proposal.reply.startswith(prompt)  # the whole file, for repair and fine-tuning
    assert "print(" not in proposal.code and "net = Model" not in proposal.code
    tree = ast.parse(proposal.code)
    assert {"build_model", "Model"} <= {n.name for n in tree.body if hasattr(n, "name")}


def test_completion_prompts_for_every_operator_show_parents_and_failures_as_comments():
    parent = Parent(
        "p1",
        "import torch.nn as nn\n\ndef build_model(s, n):\n    return nn.Linear(64, n)\n",
        {"val_acc": 0.9},
        0.8,
    )
    other = Parent(
        "p2",
        "import torch.nn as nn\n\ndef build_model(s, n):\n    return nn.Linear(64, 7)\n",
        {"val_acc": 0.7},
        0.6,
    )
    failed = Parent(
        "rejected",
        '"""doc"""\n# note\nimport torch\nx = (\n',
        stage="extract",
        message="line 4: '(' was never closed\nsecond line",
    )
    cases = {
        "mutate": [parent],
        "simplify": [parent],
        "crossover": [parent, other],
        "repair": [failed],
    }
    with FakeOpenAI(default=ok(BODY)) as server:
        proposer = LLMProposer(chat(server, mode="completion"))
        for op, parents in cases.items():
            p = proposer.propose(
                Action(op, temperature=0.5, variant="widen"), parents, SPEC, np.random.default_rng(0)
            )
            assert p.stage is None, (op, p.message)
            ast.parse(p.prompt + "\n        pass\n")
            if op != "repair":
                assert "# def build_model(s, n):" in p.prompt and "val_acc=0.9" in p.prompt
        crossover, repair = server.user_prompts()[2], server.user_prompts()[3]
    assert "nn.Linear(64, 7)" in crossover
    assert "# line 4: '(' was never closed\n# second line" in repair and "stage: extract" in repair
    assert "# import torch\n# x = (" in repair and '# """doc"""' not in repair  # the preamble is dropped
    assert "Widen the network" in server.requests[0]["body"]["prompt"]


def test_end_of_module_keeps_definitions_and_drops_usage_code():
    text = "\n        self.a = 1\n\n# a comment\nWIDTH = 3\n\nclass Extra(nn.Module):\n    pass\nx = Extra()\nmore\n"
    assert (
        end_of_module(text)
        == "\n        self.a = 1\n\n# a comment\nWIDTH = 3\n\nclass Extra(nn.Module):\n    pass\n"
    )
    assert end_of_module('\n        pass\n"""Next file"""') == "\n        pass"
    assert cut_at_stop("abc\nif __name__ == 1", STOPS) == "abc"
    assert docstring_safe('a """ b \\ c') == "a ''' b / c"
    assert commented("a\n\n  b\n") == "# a\n#\n#   b"


def test_usage_meter_and_replay_pass_completion_mode_through():
    with FakeOpenAI(default=ok("body", prompt_tokens=5, completion_tokens=2)) as server:
        records: list[dict] = []
        meter = UsageMeter(chat(server, mode="completion"), on_call=records.append)
        recorded: list = []
        replay = ReplayChat(meter, [], lambda key, texts: recorded.append((key, texts)))
        assert completion_mode(replay)
        assert replay.complete_text("p", temperature=0.1, stop=["\n```"])[0].text == "body"
        again = ReplayChat(meter, recorded, lambda *a: None)
        assert again.complete_text("p", temperature=0.1, stop=["\n```"])[0].text == "body"
    assert len(server.requests) == 1  # the second answer was replayed from the log
    assert records[0]["ok"] and records[0]["prompt_tokens"] == 5 and meter.usage.completion_tokens == 2


def test_hf_model_without_chat_template_uses_completion_mode_with_stop_strings(tmp_path):
    folder = str(build_tiny_hf(tmp_path / "plain", chat_template=False))
    model = HFChat(folder, device="cpu", max_new_tokens=8)
    assert model.mode == "completion" and completion_mode(model)
    out = model.complete_text("class Model(nn.Module):", temperature=0.0, n=2, max_tokens=8, stop=STOPS)
    assert len(out) == 2 and out[0] == out[1] and 1 <= out[0].completion_tokens <= 8
    ids = model.tokenizer("class Model(nn.Module):")["input_ids"]
    assert out[0].prompt_tokens == len(ids)
    assert HFChat(folder, device="cpu", mode="chat").mode == "chat"
    with_template = HFChat(str(build_tiny_hf(tmp_path / "chat")), device="cpu")
    assert with_template.mode == "chat" and not completion_mode(with_template)


def test_gguf_without_the_gguf_package_names_the_extra(tmp_path, monkeypatch):
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf -> ImportError
    for spec in (str(weights), str(tmp_path)):
        with pytest.raises(LLMError, match=r"llmnas\[gguf\]"):
            parse_llm(f"hf:{spec}")
    with pytest.raises(LLMError, match="no such GGUF file"):
        gguf_location(str(tmp_path / "missing.gguf"))
    assert gguf_location("some/hub-id") == ("some/hub-id", None)


def test_every_completion_template_renders_strictly():
    assert {"completion_generate", "completion_head", "completion_contract"} <= set(prompts.names())
    contract = prompts.render(
        "completion_contract", allowed_imports=", ".join(sorted(DEFAULT_ALLOWED_IMPORTS))
    )
    assert "build_model(input_shape, num_classes)" in contract
    with pytest.raises(prompts.PromptError, match="head"):
        prompts.render("completion_generate", spec="s", contract="c")


def test_fine_tuning_pairs_in_completion_mode_are_prefix_and_continuation(tmp_path):
    from llmnas.finetune.lora import continuation, encode, examples
    from llmnas.finetune.traces import Trace

    def trace(prompt: str, reply: str, reward: float) -> Trace:
        return Trace(0, 0, "c", "generate", "sys", prompt, reply, "code", "ok", None, "", reward)

    base = trace("PREFIX", "PREFIX BODY", 0.5)
    chat_written = trace("write a model", "```python\ncode\n```", 1.0)
    assert continuation(base) == " BODY" and continuation(chat_written) is None
    pairs = examples([base, chat_written], completion=True)
    assert [(m[-1]["content"], c) for m, c, _ in pairs] == [("PREFIX", " BODY")]
    model = HFChat(str(build_tiny_hf(tmp_path / "plain", chat_template=False)), device="cpu")
    ids, n_prompt = encode(model, pairs[0][0], pairs[0][1], max_length=64)
    assert ids[:n_prompt] == model.tokenizer("PREFIX")["input_ids"]  # the raw prefix, no transcript


def test_a_bare_500_on_chat_is_checked_against_completions_once(caplog):
    """transformers serve answers a chat call to a base model with a plain "Internal Server Error"."""
    with FakeOpenAI(error(500, "Internal Server Error"), ok("probe"), ok("body")) as server:
        model = chat(server, max_retries=0)
        with caplog.at_level(logging.WARNING, "llmnas.llm.chat"), pytest.raises(NoChatTemplate):
            model.complete(MESSAGES, temperature=0.2)
        assert model.mode == "completion"
        assert model.complete_text("x", temperature=0.2)[0].text == "body"
    assert [r["path"] for r in server.requests] == [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/completions",
    ]
    assert server.requests[1]["body"]["max_tokens"] == 1
    with FakeOpenAI(error(500, "Internal Server Error"), error(500, "Internal Server Error")) as server:
        model = chat(server, max_retries=0)
        with pytest.raises(LLMError, match="HTTP 500") as info:
            model.complete(MESSAGES, temperature=0.2)  # completions fail too: a plain server error
    assert not isinstance(info.value, NoChatTemplate) and model.mode == "chat"
