"""Fine-tuning the local model on its rewarded traces: selection, masking, LoRA rounds, resume, and the
demonstration that a tiny random model learns to write valid candidates from an offline search."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
import torch
from fakes.tiny_coder import build_tiny_coder, programs, proxy_reward, write_offline_run
from fakes.tiny_hf import build_tiny_hf

from llmnas.candidate import checks as validate
from llmnas.candidate.extract import extract_code
from llmnas.finetune import lora
from llmnas.finetune import tuner as tuner_module
from llmnas.finetune.lora import (
    completion_nll,
    encode,
    examples,
    finetune_lora,
    latest_adapter,
    peak_rss_mb,
    select_traces,
)
from llmnas.finetune.traces import FAILED, OK, REJECTED, Trace, collect_traces
from llmnas.finetune.tuner import FinetuneOptions, FineTuner
from llmnas.llm.local import HFChat

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

CODE = "import torch.nn as nn\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(64, num_classes)\n"


def _trace(
    i: int, reward: float | None, status: str = OK, code: str | None = None, cid: str | None = None
) -> Trace:
    return Trace(
        round=i // 4,
        slot=i % 4,
        candidate_id=cid or f"c{i}",
        operator="generate",
        system="be brief",
        prompt=f"write model {i % 3}",
        reply="",
        code=code if code is not None else CODE.replace("64", str(64 + i)),
        status=status,
        stage=None if status == OK else "shape",
        message="",
        reward=reward,
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_hf(tmp_path_factory.mktemp("tiny_hf")))


# --------------------------------------------------------------------------- pure parts


def test_select_keeps_the_best_passing_traces_once_each():
    traces = [_trace(i, r) for i, r in enumerate([0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6])]
    traces += [
        _trace(8, -0.5, FAILED),
        _trace(9, None, REJECTED, code=""),
        _trace(10, 0.95, OK, cid="c1"),  # the same candidate proposed again: counted once, best reward
        _trace(11, -0.1),
    ]
    top = select_traces(traces, top_fraction=0.25)
    assert [t.candidate_id for t in top] == ["c1", "c0"]  # ceil(0.25 * 8 distinct passing)
    assert [t.reward for t in top] == [0.95, 0.9]
    assert len(select_traces(traces, top_fraction=1.0, min_reward=0.5)) == 6
    assert len(select_traces(traces[:1], top_fraction=0.01)) == 1  # at least one when any qualifies
    assert select_traces([_trace(0, -0.2, FAILED)]) == []
    with pytest.raises(ValueError):
        select_traces(traces, top_fraction=0)


def test_examples_weight_by_normalised_reward():
    traces = [_trace(0, 1.0), _trace(1, 0.5), _trace(2, 0.0)]
    weights = [w for _, _, w in examples(traces)]
    assert weights == pytest.approx([2.0, 1.0, 0.0]) and sum(weights) / 3 == pytest.approx(1.0)
    assert [w for _, _, w in examples(traces, reward_weighted=False)] == [1.0, 1.0, 1.0]
    messages, completion, _ = examples(traces)[0]
    assert messages[0] == {"role": "system", "content": "be brief"} and completion.startswith("```python\n")


def test_encode_matches_generation_and_masks_the_prompt(tiny_model):
    chat = HFChat(tiny_model, device="cpu")
    t = _trace(0, 1.0)
    ids, n_prompt = encode(chat, t.prompt_messages, t.completion, max_length=512)
    prompt_ids = chat.tokenizer(chat.render(t.prompt_messages), add_special_tokens=False)["input_ids"]
    assert ids[:n_prompt] == prompt_ids  # exactly what chat.complete feeds the model
    assert ids[-1] == chat.tokenizer.eos_token_id  # the model learns to end its turn
    assert "def build_model" in chat.tokenizer.decode(ids[n_prompt:])
    batch = lora._batch([(ids, n_prompt), (ids[:-3], n_prompt)], pad=0, device="cpu")
    labels = batch["labels"]
    assert (labels[:, :n_prompt] == -100).all() and (labels[0, n_prompt:] != -100).all()
    assert (labels[1, len(ids) - 3 :] == -100).all() and batch["attention_mask"][1].sum() == len(ids) - 3
    short, n = encode(chat, t.prompt_messages, t.completion, max_length=len(ids) - 5)
    assert len(short) == len(ids) - 5 and short[n:] == ids[n_prompt:]  # the prompt's start goes first


# --------------------------------------------------------------------------- LoRA rounds


def _train(chat: HFChat, traces, out: Path, seed: int = 0) -> Path:
    return finetune_lora(
        chat, traces, out, steps=6, lr=5e-3, rank=4, alpha=8, batch_size=2, max_length=256, seed=seed
    )


def test_finetune_saves_loads_and_is_deterministic(tiny_model, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    traces = [_trace(i, 0.5 + 0.1 * i) for i in range(5)]
    stats = []
    chat = HFChat(tiny_model, device="cpu")
    first = finetune_lora(
        chat, traces, tmp_path / "a", steps=6, lr=5e-3, rank=4, alpha=8, batch_size=2, max_length=256,
        seed=0, meta={"evaluations": 12}, on_stats=stats.append,
    )  # fmt: skip
    assert first == tmp_path / "a" / "adapter-001"
    assert {"adapter_config.json", "adapter_model.safetensors", "finetune.json", "train.jsonl"} <= {
        p.name for p in first.iterdir()
    }
    assert isinstance(chat.model, PeftModel)  # the new adapter serves the next proposals
    meta = json.loads((first / "finetune.json").read_text())
    assert meta["examples"] == 5 and meta["steps"] == 6 and meta["evaluations"] == 12
    assert meta["loss_after"] < meta["loss_before"] and meta["peak_rss_mb"] > 0
    assert stats[0]["adapter"] == str(first)
    rows = [json.loads(line) for line in (first / "train.jsonl").read_text().splitlines()]
    assert [r["candidate_id"] for r in rows] == [t.candidate_id for t in traces]

    again = _train(HFChat(tiny_model, device="cpu"), traces, tmp_path / "b")
    other = _train(HFChat(tiny_model, device="cpu"), traces, tmp_path / "c", seed=1)
    weights = [load_file(p / "adapter_model.safetensors") for p in (first, again, other)]
    assert weights[0].keys() == weights[1].keys() and any("mlp" in k for k in weights[0])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])

    second = _train(chat, traces[:3], tmp_path / "a", seed=2)  # a second round replaces the first
    assert second.name == "adapter-002" and latest_adapter(tmp_path) is None
    assert len(chat.model.peft_config) == 1


def _greedy_logits(chat: HFChat) -> torch.Tensor:
    ids = chat.tokenizer(
        chat.render(_trace(0, 1.0).prompt_messages), return_tensors="pt", add_special_tokens=False
    )
    with torch.no_grad():
        return chat.model(**ids).logits[0, -1]


def _run_with_traces(folder: Path, count: int) -> Path:
    codes = [CODE.replace("64", str(64 + i)) for i in range(count)]
    return write_offline_run(folder, codes, [0.5 + 0.01 * i for i in range(count)])


def test_finetuner_every_k_events_and_resume(tiny_model, tmp_path):
    run = _run_with_traces(tmp_path / "run", 8)
    events = []
    options = FinetuneOptions(every=4, top_fraction=0.5, min_examples=4, steps=4, rank=4, alpha=8,
                              batch_size=2, max_length=256, lr=5e-3)  # fmt: skip
    chat = HFChat(tiny_model, device="cpu")
    tuner = FineTuner(chat, options, on_event=events.append)
    assert tuner.maybe_finetune(run, 3) is None and not events
    path = tuner.maybe_finetune(run, 5)
    assert path == run / "adapters" / "adapter-001" and latest_adapter(run) == path
    assert tuner.maybe_finetune(run, 7) is None  # not another 4 evaluations yet
    (logged,) = events
    event = logged.model_dump(mode="json")
    assert event["type"] == "finetune" and event["ok"] and event["evaluations"] == 5
    assert event["stats"]["examples"] == 4 and event["adapter"] == "adapters/adapter-001"
    assert {"loss_before", "loss_after", "seconds", "peak_rss_mb", "steps"} <= set(event["stats"])
    json.dumps(event)  # fit for events.jsonl

    # a resumed run loads the same adapter, knows when it was trained, and sees identical outputs
    resumed = FineTuner(HFChat(tiny_model, device="cpu"), options)
    assert resumed.resume(run) == path and resumed.trained_at == 5
    assert torch.allclose(_greedy_logits(resumed.chat), _greedy_logits(chat))
    assert not resumed.due(7) and resumed.due(8)
    assert FineTuner(HFChat(tiny_model, device="cpu"), options).resume(tmp_path) is None

    few = FineTuner(HFChat(tiny_model, device="cpu"), options)
    assert few.maybe_finetune(_run_with_traces(tmp_path / "small", 2), 4) is None  # too few good traces


@pytest.mark.parametrize(("epochs", "steps"), [(1.0, 2), (2.5, 5), (None, 6)])
def test_a_round_passes_over_its_examples_at_most_epochs_times(tiny_model, tmp_path, epochs, steps):
    """4 examples at batch 2: one pass is 2 steps; --finetune-steps (6) is the most a round trains."""
    run = _run_with_traces(tmp_path / "run", 8)
    events = []
    options = FinetuneOptions(every=4, top_fraction=0.5, steps=6, epochs=epochs, rank=4, alpha=8,
                              batch_size=2, max_length=256)  # fmt: skip
    FineTuner(HFChat(tiny_model, device="cpu"), options, on_event=events.append).maybe_finetune(run, 4)
    assert events[0].stats["examples"] == 4 and events[0].stats["steps"] == steps


def test_a_failed_round_keeps_the_previous_adapter(tiny_model, tmp_path, monkeypatch):
    run = _run_with_traces(tmp_path / "run", 8)
    events = []
    options = FinetuneOptions(
        every=4, top_fraction=1.0, steps=2, rank=4, alpha=8, batch_size=2, max_length=256
    )
    chat = HFChat(tiny_model, device="cpu")
    tuner = FineTuner(chat, options, on_event=events.append)
    tuner.maybe_finetune(run, 4)
    before = _greedy_logits(chat)

    def broken(*args, **kwargs):
        chat.model = chat.model.unload()  # half-way through: the adapter is already off
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(tuner_module, "finetune_lora", broken)
    assert tuner.maybe_finetune(run, 8) is None
    assert events[-1].ok is False and "out of memory" in events[-1].error
    assert torch.allclose(_greedy_logits(chat), before) and tuner.adapter == run / "adapters" / "adapter-001"
    assert not tuner.due(11) and tuner.due(12)  # the next try waits for another K evaluations


def test_finetuner_needs_a_local_model():
    class Remote:
        name = "openai:x"

    with pytest.raises(Exception, match="hf:PATH"):
        FineTuner(Remote(), FinetuneOptions(every=4))


# --------------------------------------------------------------------------- the demonstration


def valid_rate(
    chat: HFChat, messages, n: int, seed: int = 0, max_tokens: int = 200
) -> tuple[float, list[str]]:
    """Sample ``n`` replies; the share that yields code passing extraction and the static checks."""
    torch.manual_seed(seed)
    replies = chat.complete(messages, temperature=0.7, n=n, max_tokens=max_tokens)
    valid = []
    for reply in replies:
        with warnings.catch_warnings():  # ast warns about the broken literals of bad samples
            warnings.simplefilter("ignore", SyntaxWarning)
            extracted = extract_code(reply.text)
            checked = validate.check(extracted.code) if hasattr(extracted, "code") else extracted
        if isinstance(checked, validate.Checked):
            valid.append(checked.code)
    return len(valid) / n, valid


@pytest.fixture
def one_thread():
    """Tiny matrices gain nothing from threads, and on a busy machine OpenMP threads spin-wait on each
    other (measured here: 200 steps took 334 s with 2 threads under load, 31 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.model
def test_a_random_model_learns_to_write_valid_candidates(tmp_path, one_thread):
    """An offline search's rewarded traces teach a tiny random model the candidate template.

    The rewards are a fast proxy (``proxy_reward``: conv depth and batch norm), not trained accuracy;
    bench/finetune_demo.py runs the same on a real offline search."""
    start = time.perf_counter()
    coder = build_tiny_coder(tmp_path / "coder")
    train = programs("image", 128, seed=0)
    held_out = [c for c in programs("image", 160, seed=99) if c not in set(train)][:16]
    run = write_offline_run(tmp_path / "run", train, [proxy_reward(c) for c in train])
    messages = collect_traces(run)[0].prompt_messages  # the generate prompt, as the LLM proposer sends it
    pairs = [(messages, f"```python\n{c.strip()}\n```") for c in held_out]

    chat = HFChat(str(coder), device="cpu")
    rate_before, _ = valid_rate(chat, messages, n=16)
    nll_before = completion_nll(chat, pairs, max_length=1024)

    events = []
    options = FinetuneOptions(every=128, top_fraction=0.5, steps=150, lr=2e-2, rank=16, alpha=32,
                              batch_size=4, max_length=1024, seed=0, epochs=None)  # fmt: skip
    adapter = FineTuner(chat, options, on_event=events.append).maybe_finetune(run, 128)
    assert adapter is not None and events[0].stats["examples"] == 64

    rate_after, valid = valid_rate(chat, messages, n=16)
    nll_after = completion_nll(chat, pairs, max_length=1024)
    print(
        f"\nvalid rate {rate_before:.0%} -> {rate_after:.0%}; held-out NLL/token {nll_before:.2f} -> "
        f"{nll_after:.2f}; training {events[0].stats['seconds']:.1f}s; peak RSS {peak_rss_mb():.0f} MiB; "
        f"total {time.perf_counter() - start:.0f}s"
    )
    assert rate_before == 0.0
    assert rate_after >= 2 / 16 and all("def build_model" in code for code in valid)  # 4/16 here
    assert nll_after < 0.3 * nll_before
