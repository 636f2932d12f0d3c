"""The model learns from its rewards: a tiny random LM, fine-tuned on an offline search's rewarded traces,
goes from writing no valid candidates to writing them at a measured rate.

1. A real offline search (RL controller + code mutations, sandboxed training on digits) fills a run folder;
   ``--proxy`` skips it and uses rendered programs with a fast proxy reward instead.
2. A tiny randomly initialised Llama (code tokenizer trained locally, tests/fakes/tiny_coder.py) is loaded
   through ``HFChat``; it samples replies to the ``generate`` prompt of the run's spec (as the LLM proposer
   sends it) and the share that passes extraction + static checks is measured, with the NLL per token of
   held-out rendered programs.
3. ``FineTuner.maybe_finetune`` trains a LoRA adapter on the best traces, saves it in the run folder and
   loads it; step 2 is measured again, plus a few proposals through ``LLMProposer``.

    python bench/finetune_demo.py [--budget 64] [--steps 300] [--samples 32] [--proxy] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.tiny_coder import (  # noqa: E402
    build_tiny_coder,
    programs,
    proxy_reward,
    write_offline_run,
)

from llmnas.candidate import checks as validate  # noqa: E402
from llmnas.candidate.extract import extract_code  # noqa: E402
from llmnas.config import RunConfig  # noqa: E402
from llmnas.finetune.lora import (  # noqa: E402
    completion_nll,
    peak_rss_mb,
    select_traces,
)
from llmnas.finetune.traces import OK, collect_traces, export_traces  # noqa: E402
from llmnas.finetune.tuner import FinetuneOptions, FineTuner  # noqa: E402
from llmnas.llm.local import HFChat  # noqa: E402
from llmnas.propose.base import Action  # noqa: E402
from llmnas.propose.llm import LLMProposer  # noqa: E402
from llmnas.run import start  # noqa: E402
from llmnas.task.spec import TaskSpec  # noqa: E402
from sandbox.protocol import TrainConfig  # noqa: E402

REQ = "classify 8x8 grayscale digits into 10 classes; under 20k parameters"


def search(out: Path, budget: int, seed: int) -> Path:
    cfg = RunConfig(
        requirements=REQ,
        data="digits",
        budget=budget,
        workers=2,
        seed=seed,
        train=TrainConfig(max_steps=150, eval_every=50),
    )
    return start(cfg, out, progress=False, announce=lambda _: None).run_dir


def proxy_run(out: Path, count: int, seed: int) -> Path:
    codes = programs("image", count, seed=seed)
    return write_offline_run(out, codes, [proxy_reward(c) for c in codes])


def valid_code(text: str) -> str | None:
    """The checked code of a reply (extraction + static checks, as the loop does), or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # ast warns about the broken literals of bad samples
        extracted = extract_code(text)
        checked = validate.check(extracted.code) if hasattr(extracted, "code") else extracted
    return checked.code if isinstance(checked, validate.Checked) else None


def sample(chat: HFChat, messages, n: int, seed: int) -> list[str]:
    """The valid programs among ``n`` sampled replies."""
    torch.manual_seed(seed)
    valid = []
    for i in range(0, n, 16):
        for reply in chat.complete(messages, temperature=0.7, n=min(16, n - i), max_tokens=256):
            if (code := valid_code(reply.text)) is not None:
                valid.append(code)
    return valid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=64, help="offline search budget (candidates)")
    ap.add_argument("--proxy", action="store_true", help="skip the search: rendered programs, proxy reward")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1.5e-2)
    ap.add_argument("--top-fraction", type=float, default=0.5)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--proposals", type=int, default=8, help="proposals through LLMProposer after")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no OpenMP spin on a busy box)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--device", default="cpu", help="where the local model runs and is fine-tuned: cpu, cuda, auto"
    )
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    root = args.out or Path(tempfile.mkdtemp(prefix="finetune-demo-"))
    root.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    run = (
        proxy_run(root / "run", 128, args.seed)
        if args.proxy
        else search(root / "run", args.budget, args.seed)
    )
    search_s = time.perf_counter() - t0
    traces = collect_traces(run)
    passing = [t for t in traces if t.status == OK]
    rss_search = peak_rss_mb()
    exported = export_traces(run, run / "traces.jsonl", force=True)
    known = {t.code for t in traces if t.code}
    rng = np.random.default_rng(1000 + args.seed)
    held_out = [c for c in programs("image", 64, seed=int(rng.integers(1 << 30))) if c not in known][:32]

    coder = build_tiny_coder(root / "coder")
    chat = HFChat(str(coder), device=args.device)
    messages = next(t for t in traces if t.code).prompt_messages
    pairs = [(messages, f"```python\n{c.strip()}\n```") for c in held_out]
    before = sample(chat, messages, args.samples, args.seed)
    nll_before = completion_nll(chat, pairs, max_length=1024)
    # the run's passing programs that the top fraction leaves out: unseen, but from the search's distribution
    chosen = {t.candidate_id for t in select_traces(traces, args.top_fraction)}
    unselected = [(t.prompt_messages, t.completion) for t in passing if t.candidate_id not in chosen]
    run_before = completion_nll(chat, unselected, max_length=1024) if unselected else float("nan")

    events: list[dict] = []
    options = FinetuneOptions(
        every=len(traces),
        top_fraction=args.top_fraction,
        min_examples=4,
        steps=args.steps,
        lr=args.lr,
        rank=16,
        alpha=32,
        batch_size=4,
        max_length=1024,
        seed=args.seed,
    )
    adapter = FineTuner(chat, options, on_event=events.append).maybe_finetune(run, len(traces))
    if adapter is None:
        raise SystemExit(f"too few good traces to fine-tune on ({len(passing)} passing)")
    after = sample(chat, messages, args.samples, args.seed)
    nll_after = completion_nll(chat, pairs, max_length=1024)
    run_after = completion_nll(chat, unselected, max_length=1024) if unselected else float("nan")
    spec = TaskSpec.model_validate(json.loads((run / "run.json").read_text())["spec"])
    proposer = LLMProposer(chat, max_tokens=256)
    proposals = [
        proposer.propose(Action("generate", temperature=0.7), [], spec, np.random.default_rng(i))
        for i in range(args.proposals)
    ]
    proposed_valid = sum(
        p.code is not None and isinstance(validate.check(p.code), validate.Checked) for p in proposals
    )

    e = events[0]
    print(
        f"source: {'proxy rewards, 128 rendered programs' if args.proxy else f'offline search, budget {args.budget}'}"
        f" ({search_s:.0f}s): {len(traces)} proposals, {len(passing)} passing, {exported} traces exported"
    )
    print(
        f"fine-tuned on {e['examples']} traces (top {args.top_fraction:.0%}), {e['steps']} steps, LoRA r16, "
        f"{e['trainable_params']:,} trainable params: {e['seconds']:.1f}s; train loss "
        f"{e['loss_before']:.2f} -> {e['loss_after']:.2f}"
    )
    print(
        f"valid rate ({args.samples} samples, T=0.7): {len(before) / args.samples:.0%} -> "
        f"{len(after) / args.samples:.0%}  ({len(set(after))} distinct, "
        f"{len(set(after) - known)} not in the run)"
    )
    print(
        f"held-out NLL/token: {len(pairs)} random programs of the space {nll_before:.2f} -> {nll_after:.2f}; "
        f"{len(unselected)} passing programs of the run not trained on {run_before:.2f} -> {run_after:.2f}"
    )
    print(f"through LLMProposer.propose after: {proposed_valid}/{args.proposals} valid")
    print(f"peak RSS: {peak_rss_mb():.0f} MiB (after the search {rss_search:.0f} MiB); adapter: {adapter}")
    print(f"total {time.perf_counter() - t0:.0f}s on {chat.device}; run folder: {run}")


if __name__ == "__main__":
    main()
