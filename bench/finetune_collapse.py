"""Does a LoRA round on a few of the model's own outputs collapse it, and does training for fewer passes
over them avoid that? (issue 30, point 5: after such a round, the warm-started model of bench/llm_race.py
repeated one program at every temperature.)

From a finished llm-warm arm of bench/llm_race.py (its run folder, its first online adapter and the warm
model it started from), the same prompt is sampled ``--samples`` times at ``--temperature`` by:

- ``warm``: the warm model, no online adapter;
- ``round``: the run's own first online adapter (as the race trained it: its steps on its examples);
- ``steps=N``: a fresh adapter trained on the same examples, with the same settings, for each N given.

Per model: how many samples are valid candidates (extraction and the static checks), how many distinct
programs they are, and how many are verbatim copies of a training example.

    python bench/finetune_collapse.py --run /tmp/race2/llm-warm --model /tmp/race2/warm/model --steps 1 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from finetune_demo import valid_code  # noqa: E402


def valid_programs(chat, prompt: str, args) -> list[str | None]:
    """Each sample's checked code, or None where it is not a valid candidate."""
    import torch

    from llmnas.propose.llm import STOPS, end_of_module

    torch.manual_seed(args.seed)
    replies = chat.complete_text(
        prompt, temperature=args.temperature, n=args.samples, max_tokens=args.max_tokens, stop=STOPS
    )
    return [valid_code(f"```python\n{prompt}{end_of_module(reply.text)}") for reply in replies]


def row(name: str, programs: list[str | None], trained: set[str], seconds: float) -> dict:
    valid = [p for p in programs if p is not None]
    return {
        "model": name,
        "samples": len(programs),
        "valid": len(valid),
        "distinct": len(set(valid)),
        "copies_of_training": sum(p in trained for p in valid),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="an llm-warm run folder of bench/llm_race.py")
    parser.add_argument("--model", type=Path, required=True, help="the warm model it started from")
    parser.add_argument("--steps", type=int, nargs="*", default=[1, 3], help="fresh adapters' training steps")
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the rows here as JSON")
    args = parser.parse_args()

    from llmnas.candidate import checks as validate
    from llmnas.finetune.lora import finetune_lora
    from llmnas.finetune.traces import collect_traces
    from llmnas.llm.local import HFChat

    adapter = args.run / "adapters" / "adapter-001"
    meta = json.loads((adapter / "finetune.json").read_text())
    by_id = {t.candidate_id: t for t in collect_traces(args.run) if t.candidate_id in meta["candidates"]}
    examples = [by_id[c] for c in meta["candidates"]]
    trained = {c.code for t in examples if isinstance(c := validate.check(t.code), validate.Checked)}
    prompt = examples[0].prompt  # a completion-mode prompt of the run, as the proposer sent it
    print(
        f"{len(examples)} training examples ({meta['steps']} steps in the race); prompt {len(prompt)} chars"
    )

    chat = HFChat(str(args.model), device="cpu")
    rows = []

    def sample(name: str) -> None:
        start = time.perf_counter()
        rows.append(row(name, valid_programs(chat, prompt, args), trained, time.perf_counter() - start))
        print(json.dumps(rows[-1]), flush=True)

    sample("warm")
    chat.load_adapter(str(adapter))
    sample(f"round ({meta['steps']} steps)")
    for steps in args.steps:
        chat.model = chat.model.unload()
        stats: dict = {}
        finetune_lora(
            chat,
            examples,
            args.run.parent / f"collapse-adapters-{steps}",
            steps=steps,
            lr=meta["lr"],
            rank=meta["rank"],
            alpha=meta["alpha"],
            batch_size=meta["batch_size"],
            seed=meta["seed"],
            reward_weighted=meta["reward_weighted"],
            on_stats=stats.update,
        )
        print(f"steps={steps}: loss {stats['loss_before']:.4f} -> {stats['loss_after']:.4f}", flush=True)
        sample(f"steps={steps}")
    if args.out:
        args.out.write_text(
            json.dumps({"settings": vars(args) | {"run": str(args.run)}, "rows": rows}, default=str)
        )


if __name__ == "__main__":
    main()
