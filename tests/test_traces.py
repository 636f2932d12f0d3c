"""Traces: every proposal of a run as a (prompt, completion, reward) record, exported as TRL-ready JSONL."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FAST_TRAIN, SANDBOX_LIMITS, logged
from fakes.tiny_hf import build_tiny_hf

from llmnas.candidate import checks as validate
from llmnas.config import RunConfig
from llmnas.engine.loop import Search
from llmnas.finetune.traces import (
    FAILED,
    OK,
    PENDING,
    REJECTED,
    collect_traces,
    export_traces,
    run_generate_prompt,
)
from llmnas.llm import prompts
from llmnas.llm.chat import Completion
from llmnas.metrics import FAILURE_REWARDS
from llmnas.propose.llm import LLMProposer
from llmnas.propose.offline import OfflineProposer
from llmnas.runs.events import parse_line
from llmnas.runs.store import RunStore
from llmnas.task.requirements import parse_requirements

REQ = "classify 8x8 digits into 10 classes; under 20k parameters"
CODE = "import torch.nn as nn\n\ndef build_model(input_shape, num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n"


def _new_run(folder: Path, data, **overrides) -> tuple[RunConfig, object, RunStore]:
    cfg = RunConfig(
        requirements=REQ,
        data="digits",
        workers=2,
        seed=3,
        train=FAST_TRAIN,
        limits=SANDBOX_LIMITS,
        repair_attempts=0,
        **overrides,
    )
    spec = parse_requirements(REQ).resolve(
        input_shape=data.input_shape, num_classes=data.num_classes, modality=data.modality
    )
    store = RunStore.create(
        folder, {"config": cfg.model_dump(mode="json"), "spec": spec.model_dump(mode="json")}, REQ
    )
    return cfg, spec, store


def _trl_is_conversational(example: dict) -> bool:
    """TRL's data_utils.is_conversational looks at one arbitrary supported key: all must agree."""
    keys = [k for k in ("prompt", "chosen", "rejected", "completion", "messages") if k in example]
    kinds = {
        isinstance(example[k], list)
        and isinstance(example[k][0], dict)
        and {"role", "content"} <= set(example[k][0])
        for k in keys
    }
    assert len(kinds) == 1, f"mixed conversational and plain columns: {keys}"
    return kinds.pop()


def test_offline_search_traces_are_prompt_completion_pairs(pool, digits, tmp_path):
    cfg, spec, store = _new_run(tmp_path / "run", digits)
    search = Search(cfg, spec, digits, OfflineProposer(spec.modality, cfg.seed), pool, store, progress=False)
    search.run(6)
    store.close()

    traces = collect_traces(tmp_path / "run")
    proposals = [e for e in logged(store.folder) if e["type"] == "proposal"]
    evaluations = {e["candidate_id"]: e for e in logged(store.folder) if e["type"] == "evaluation"}
    assert len(traces) == len(proposals) == 6
    generate = run_generate_prompt(tmp_path / "run")
    assert "## Task" in generate and "at most 20,000 parameters" in generate
    for t in traces:
        if t.status in (OK, FAILED):
            e = evaluations[t.candidate_id]
            assert t.reward == e["reward"] and t.stage == e["stage"]
            assert t.synthetic_prompt and t.prompt == generate  # offline proposals had no prompt
            assert t.system == prompts.render("system")
            # the completion is what a good reply looks like: extractable, valid, the same candidate
            checked = validate.check(t.completion.removeprefix("```python\n").removesuffix("\n```"))
            assert checked.candidate_id == t.candidate_id
        else:
            assert t.status == REJECTED and t.reward == FAILURE_REWARDS[t.stage]
    assert any(t.status == OK for t in traces)

    out = tmp_path / "traces.jsonl"
    assert export_traces(tmp_path / "run", out) == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        assert _trl_is_conversational(row)
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert [m["role"] for m in row["completion"]] == ["assistant"]
        assert row["messages"] == row["prompt"] + row["completion"]
        assert {"reward", "status", "stage", "candidate_id", "operator"} <= set(row)
    good = export_traces(tmp_path / "run", tmp_path / "good.jsonl", min_reward=0.0)
    assert good == sum(t.status == OK for t in traces)


class _ScriptedChat:
    """A ChatModel that cycles through replies: good code, prose, a forbidden call, other good code."""

    name = "scripted"

    def __init__(self):
        self.calls = 0
        forbidden = CODE.replace("    return", "    open('/etc/hostname')\n    return")
        self.replies = [
            f"Here you go.\n```python\n{CODE}```",
            "I would use a small CNN here.",
            f"```python\n{forbidden}```",
            f"```python\n{CODE.replace('Linear(64', 'Linear(input_shape[0] * 64')}```",
        ]

    def complete(self, messages, *, temperature, n=1, max_tokens=2048):
        self.calls += 1
        return [Completion(self.replies[(self.calls - 1) % len(self.replies)])] * n


def test_llm_search_keeps_prompt_and_reply_of_every_proposal(pool, digits, tmp_path):
    cfg, spec, store = _new_run(tmp_path / "run", digits)
    search = Search(cfg, spec, digits, LLMProposer(_ScriptedChat()), pool, store, progress=False)
    search.run(8)
    store.close()

    traces = collect_traces(tmp_path / "run")
    proposals = [e for e in logged(tmp_path / "run") if e["type"] == "proposal"]
    assert len(traces) == len(proposals) >= 8  # duplicates are proposed again and do not count
    for t in traces:
        assert t.prompt and not t.synthetic_prompt  # the prompt the model really saw
        assert t.reply  # ... and what it answered, rejected or not
        if t.status == REJECTED:
            assert t.reward == FAILURE_REWARDS[t.stage] and t.stage in ("extract", "static", "duplicate")
            if t.stage == "extract":
                assert t.code is None and t.completion == t.reply
        else:
            assert (tmp_path / "run" / "candidates" / t.candidate_id / "prompt.md").read_text() == t.prompt
    stages = {t.stage for t in traces if t.status == REJECTED}
    assert {"extract", "static"} <= stages


def _event(store: RunStore, **fields) -> None:
    store.append(parse_line(json.dumps({"round": 0, **fields})))


def test_collect_joins_events_and_files_and_handles_replays(tmp_path, digits):
    _, _, store = _new_run(tmp_path / "run", digits)
    store.write_candidate("aaa", CODE, "the prompt", "```python\n" + CODE + "```")
    store.write_candidate("bbb", CODE.replace("64", "65"))  # offline: no prompt, no reply
    base = {"type": "proposal", "operator": "generate", "stage": None, "message": ""}
    _event(store, **base, round=0, slot=0, candidate_id="aaa")
    _event(store, **base, round=0, slot=1, candidate_id="bbb")
    assert store.keep_proposal(0, 2, None, "p2", "no code here") is not None
    assert store.keep_proposal(0, 3, None, "", "") is None
    _event(store, **(base | {"stage": "extract", "message": "no code"}), round=0, slot=2, candidate_id=None)
    _event(
        store,
        type="evaluation",
        candidate_id="aaa",
        ok=True,
        stage=None,
        reward=0.9,
        metrics={"val_acc": 0.9, "params": 650},
    )
    _event(store, type="evaluation", candidate_id="bbb", ok=False, stage="shape", reward=-0.5, metrics={})
    _event(store, **base, round=1, slot=0, candidate_id="ccc")  # in flight when the run was killed
    _event(store, **base, round=0, slot=1, candidate_id="bbb")  # a resumed round logs its proposals again
    store.close()

    traces = collect_traces(tmp_path / "run")
    assert [(t.round, t.slot, t.status) for t in traces] == [
        (0, 0, OK),
        (0, 1, FAILED),
        (0, 2, REJECTED),
        (1, 0, PENDING),
    ]
    a, b, c, d = traces
    assert (a.prompt, a.reward, a.metrics["val_acc"], a.synthetic_prompt) == ("the prompt", 0.9, 0.9, False)
    assert a.completion == f"```python\n{CODE.strip()}\n```"
    assert b.synthetic_prompt and b.prompt == run_generate_prompt(tmp_path / "run") and b.stage == "shape"
    assert (c.prompt, c.reply, c.code, c.reward) == ("p2", "no code here", None, FAILURE_REWARDS["extract"])
    assert d.reward is None and d.code is None
    assert [t.slot for t in collect_traces(tmp_path / "run", before_round=1)] == [0, 1, 2]

    row = a.record()
    assert row["val_acc"] == 0.9 and row["params"] == 650.0 and row["reward"] == 0.9
    assert json.loads(json.dumps(row)) == row
    assert export_traces(tmp_path / "run", tmp_path / "x.jsonl", min_reward=-0.6) == 2  # a, b; not pending


def test_exported_rows_tokenise_like_trl_prompt_completion(tmp_path, digits):
    """TRL tokenises chat_template(prompt) and chat_template(prompt + completion) and masks the first:
    the prompt must be a prefix, so the loss falls on the completion only."""
    from transformers import AutoTokenizer

    _, _, store = _new_run(tmp_path / "run", digits)
    store.write_candidate("aaa", CODE)
    _event(store, type="proposal", round=0, slot=0, candidate_id="aaa", operator="generate", stage=None)
    _event(store, type="evaluation", candidate_id="aaa", ok=True, stage=None, reward=0.8, metrics={})
    store.close()
    export_traces(tmp_path / "run", tmp_path / "t.jsonl")
    row = json.loads((tmp_path / "t.jsonl").read_text())
    tok = AutoTokenizer.from_pretrained(build_tiny_hf(tmp_path / "tok"))
    prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    assert full.startswith(prompt) and "def build_model" in full[len(prompt) :]
    assert tok.apply_chat_template(row["messages"], tokenize=False) == full
