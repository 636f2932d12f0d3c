"""Fine-tune the local model on its own rewarded traces: a peft LoRA adapter every K evaluations.

The examples are the best-rewarded traces of the run (``select_traces``): the chat messages the model
was sent and, as the target, the candidate's code in one ```python block. The loss is the completion's
next-token NLL only (prompt tokens are masked with -100), optionally weighted per example by its reward
normalised to mean 1. For a model in completion mode (a base model) an example is the file prefix the
model was given and the continuation it wrote (``completion_pairs``). Each round trains a fresh adapter from the base weights on the current best
traces (so an adapter depends only on the traces and the seed, and resume needs only the latest one),
saves it under ``<run>/adapters/adapter-NNN/`` and loads it into the chat model for the next proposals.

Needs torch, transformers and peft (``pip install 'llmnas[finetune]'``); runs on CPU or CUDA.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmnas.finetune.traces import OK, Trace
from llmnas.llm.chat import LLMError, completion_mode
from llmnas.llm.local import HFChat
from llmnas.runs.layout import RunLayout
from llmnas.runs.store import write_atomic

log = logging.getLogger("llmnas.finetune.lora")

META = "finetune.json"
TRAIN_SET = "train.jsonl"
LOSS_PROBE = 32  # examples whose completion NLL is reported before and after training
# A pair the trainer learns from: the prompt messages, the completion text, and its loss weight.
Example = tuple[list[dict[str, str]], str, float]


# --------------------------------------------------------------------------- which traces


def select_traces(
    traces: Sequence[Trace], top_fraction: float = 0.25, min_reward: float = 0.0
) -> list[Trace]:
    """The best passing traces: one per candidate, reward >= ``min_reward``, the top ``top_fraction``
    by reward (at least one when any qualifies), best first."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    best: dict[str, Trace] = {}
    for t in traces:
        if t.status != OK or not t.code or t.reward is None or t.reward < min_reward:
            continue
        key = t.candidate_id or f"{t.round}-{t.slot}"
        if key not in best or t.reward > best[key].reward:
            best[key] = t
    ranked = sorted(best.values(), key=lambda t: (-t.reward, t.round, t.slot))
    return ranked[: max(1, math.ceil(top_fraction * len(ranked)))] if ranked else []


def continuation(trace: Trace) -> str | None:
    """What a model in completion mode wrote after its prompt (the recorded reply is the prompt plus
    the continuation), or None for a trace written otherwise."""
    reply, prompt = trace.reply or "", trace.prompt or ""
    if prompt and reply.startswith(prompt) and reply[len(prompt) :].strip():
        return reply[len(prompt) :]
    return None


def examples(
    traces: Sequence[Trace], *, reward_weighted: bool = True, completion: bool = False
) -> list[Example]:
    """Training pairs from traces; weights are rewards normalised to mean 1 (all 1 when unweighted).
    ``completion``: (file prefix, continuation) pairs, only from traces written in completion mode."""
    if completion:
        traces = [t for t in traces if continuation(t) is not None]
    rewards = np.array([max(float(t.reward or 0.0), 0.0) for t in traces])
    if reward_weighted and len(rewards) and rewards.sum() > 0:
        weights = rewards / rewards.mean()
    else:
        weights = np.ones(len(traces))
    return [
        (t.prompt_messages, (continuation(t) or "") if completion else t.completion, float(w))
        for t, w in zip(traces, weights, strict=True)
    ]


# --------------------------------------------------------------------------- tokenising


def encode(
    chat: HFChat, messages: list[dict[str, str]], completion: str, max_length: int
) -> tuple[list[int], int]:
    """Token ids of prompt + completion (+ end of turn) as ``chat.complete`` would see them, and the
    number of prompt tokens. A too-long pair loses the start of its prompt first. In completion mode the
    prompt is the last message's text as it is (the start of the file) and ``completion`` its continuation."""
    tok = chat.tokenizer
    raw = completion_mode(chat)
    template = bool(getattr(tok, "chat_template", None)) and not raw
    prompt_text = messages[-1]["content"] if raw else chat.render(messages)
    tail = completion + (tok.eos_token or "")
    if template:
        full = tok.apply_chat_template(
            [*messages, {"role": "assistant", "content": completion}], tokenize=False
        )
        if full.startswith(prompt_text) and tok.eos_token and tok.eos_token in full[len(prompt_text) :]:
            rest = full[len(prompt_text) :]
            tail = rest[: rest.index(tok.eos_token) + len(tok.eos_token)]  # up to the end of the turn
    prompt_ids = tok(prompt_text, add_special_tokens=not template)["input_ids"]
    completion_ids = tok(tail, add_special_tokens=False)["input_ids"]
    if len(completion_ids) >= max_length:
        completion_ids, prompt_ids = completion_ids[: max_length - 1], prompt_ids[-1:]
    elif len(prompt_ids) + len(completion_ids) > max_length:
        prompt_ids = prompt_ids[len(prompt_ids) + len(completion_ids) - max_length :]
    return prompt_ids + completion_ids, len(prompt_ids)


def _batch(encoded: list[tuple[list[int], int]], pad: int, device: str) -> dict[str, Any]:
    """Right-padded ids, attention mask and labels (-100 on the prompt and the padding)."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(encoded):
        row = torch.tensor(ids, dtype=torch.long)
        input_ids[i, : len(ids)] = row
        labels[i, n_prompt : len(ids)] = row[n_prompt:]
        mask[i, : len(ids)] = 1
    # Logits are needed only from the last prompt token on: with a 150k vocabulary they are the
    # largest tensors of the step, so the model computes just that tail (``logits_to_keep``).
    keep = width - min(n_prompt for _, n_prompt in encoded) + 1
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
        "keep": min(keep, width),
    }


def _example_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Per-example summed NLL of the completion tokens, and their token counts."""
    import torch.nn.functional as F

    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    try:
        logits = model(**inputs, logits_to_keep=batch["keep"]).logits
    except TypeError:  # a model without logits_to_keep: all positions
        logits = model(**inputs).logits
    offset = batch["input_ids"].shape[1] - logits.shape[1]  # logits[:, j] predicts token offset + j + 1
    targets = batch["labels"][:, offset + 1 :]
    nll = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(targets.shape)
    counts = (targets != -100).sum(dim=1)
    return nll.sum(dim=1), counts


def completion_nll(
    chat: HFChat,
    pairs: Sequence[tuple[list[dict[str, str]], str]],
    *,
    max_length: int = 2048,
    batch_size: int = 8,
) -> float:
    """Mean NLL per completion token (nats) of ``(messages, completion)`` pairs under the chat model
    as it is now (with its adapter, if any)."""
    import torch

    model, pad = chat.model, _pad_id(chat)
    encoded = [encode(chat, m, c, max_length) for m, c in pairs]
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            nll, n = _example_nll(model, _batch(encoded[i : i + batch_size], pad, chat.device))
            total += float(nll.sum())
            count += int(n.sum())
    model.train(was_training)
    return total / max(count, 1)


def _pad_id(chat: HFChat) -> int:
    tok = chat.tokenizer
    for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


# --------------------------------------------------------------------------- training


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def finetune_lora(
    chat: HFChat,
    traces: Sequence[Trace],
    out_dir: Path,
    *,
    steps: int = 100,
    lr: float = 2e-4,
    rank: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    batch_size: int = 4,
    max_length: int = 2048,
    seed: int = 0,
    reward_weighted: bool = True,
    gradient_checkpointing: bool = False,
    target_modules: str | list[str] = "all-linear",
    meta: dict | None = None,
    on_stats: Callable[[dict], None] | None = None,
) -> Path:
    """Train a fresh LoRA adapter (attention and MLP projections) on ``traces``, save it to
    ``out_dir/adapter-NNN`` (the next free number) and make it the chat model's active adapter.

    Deterministic given ``seed`` and the traces on one device. ``meta`` is stored with the adapter
    (``finetune.json``) next to the numbers of the round (examples, steps, loss before/after, seconds,
    peak memory), which ``on_stats`` also receives. Returns the adapter's folder.
    """
    try:
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError as e:
        raise LLMError("fine-tuning needs peft: pip install 'llmnas[finetune]' (or peft)") from e
    if not traces:
        raise ValueError("no traces to fine-tune on")
    start = time.perf_counter()
    data = examples(traces, reward_weighted=reward_weighted, completion=completion_mode(chat))
    if not data:
        raise ValueError("no traces written in completion mode to fine-tune on")
    encoded = [encode(chat, m, c, max_length) for m, c, _ in data]
    weights = torch.tensor([w for _, _, w in data], dtype=torch.float32)
    device = chat.device
    base = chat.model.unload() if isinstance(chat.model, PeftModel) else chat.model
    if chat.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = get_peft_model(base, config)
        try:
            loss_before, loss_after, last, params = _train(
                chat,
                model,
                data,
                encoded,
                weights,
                steps,
                lr,
                batch_size,
                max_length,
                seed,
                gradient_checkpointing,
            )
        except BaseException:
            chat.model = model.unload()  # no half-trained adapter in use; FineTuner reloads the last one
            raise
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"adapter-{next_index(out_dir):03d}"
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    stats = {
        "examples": len(data),
        "steps": steps,
        "lr": lr,
        "rank": rank,
        "alpha": alpha,
        "batch_size": batch_size,
        "reward_weighted": reward_weighted,
        "seed": seed,
        "loss_before": round(loss_before, 4),
        "loss_after": round(loss_after, 4),
        "last_batch_loss": round(last, 4),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "gpu_peak_mb": (
            round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None
        ),
        "trainable_params": sum(p.numel() for p in params),
        "candidates": [t.candidate_id for t in traces],
        **(meta or {}),
    }
    write_atomic(tmp / TRAIN_SET, "".join(json.dumps(t.record()) + "\n" for t in traces))
    write_atomic(tmp / META, json.dumps(stats, indent=1))
    tmp.rename(path)
    chat.model = model.unload()  # back to the bare base model, then load what was saved: the same
    chat.load_adapter(str(path))  # path a resumed run takes, so both see identical weights
    if on_stats is not None:
        on_stats({**stats, "adapter": str(path)})
    return path


def _train(
    chat: HFChat,
    model: Any,
    data: list[Example],
    encoded: list[tuple[list[int], int]],
    weights: Any,
    steps: int,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int,
    gradient_checkpointing: bool,
) -> tuple[float, float, float, list]:
    """AdamW on the LoRA weights, batches drawn epoch by epoch in a seeded order, linear decay to 10%.
    Returns the probe loss before and after, the last batch's loss and the trained parameters."""
    import torch

    pad, device = _pad_id(chat), chat.device
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    chat.model = model
    probe = [(m, c) for m, c, _ in data[:LOSS_PROBE]]  # the best examples: loss before and after
    loss_before = completion_nll(chat, probe, max_length=max_length)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    order = np.random.default_rng(seed)
    queue: list[int] = []
    model.train()
    last = float("nan")
    for step in range(steps):
        picked = []
        while len(picked) < min(batch_size, len(encoded)):
            if not queue:
                queue = list(order.permutation(len(encoded)))
            picked.append(int(queue.pop()))
        batch = _batch([encoded[i] for i in picked], pad, device)
        nll, counts = _example_nll(model, batch)
        per_example = nll / counts.clamp(min=1)
        loss = (per_example * weights[picked].to(per_example.device)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # linear decay to 10% of lr
            group["lr"] = lr * (1 - 0.9 * (step + 1) / steps)
        last = float(loss.detach())
    model.eval()
    if gradient_checkpointing:
        model.gradient_checkpointing_disable()
    loss_after = completion_nll(chat, probe, max_length=max_length)
    return loss_before, loss_after, last, params


def next_index(out_dir: Path) -> int:
    used = [_index(p) for p in out_dir.glob("adapter-*") if _index(p) is not None]
    return max(used, default=0) + 1


def _index(path: Path) -> int | None:
    name = path.name
    if not name.startswith("adapter-") or not name[len("adapter-") :].isdigit():
        return None
    return int(name[len("adapter-") :])


def latest_adapter(run_dir: Path) -> Path | None:
    """The newest complete adapter of a run (``<run>/adapters/adapter-NNN`` with its meta), or None."""
    folder = RunLayout(run_dir).adapters
    done = [p for p in folder.glob("adapter-*") if _index(p) is not None and (p / META).is_file()]
    return max(done, key=_index, default=None)
