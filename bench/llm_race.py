"""The language model in the race (issue 30, point 5): on one task of bench/nas_tasks.py, at equal
evaluations, the real local model against the offline default and random search.

Every arm is the product's own run (``llmnas.run.start``: sandboxed training, the run folder, the log) on
the task's data, with the same seed, budget, rounds of 2 and training steps:

- ``llm``: google/gemma-3-270m (``llmnas[tiny-model]``, completion mode, CPU) writes every candidate, with
  ``--finetune-every K``: a LoRA round on its own rewarded outputs every K evaluations (none before it
  has enough passing ones: ``FinetuneOptions.min_examples``);
- ``llm-warm``: the same, from the model after one LoRA round on the passing programs of an offline search
  on the task (``--warm N``, another seed; merged into its weights): the warm start bench/real_model.py
  measured, then online rounds on its own outputs;
- ``local``: the offline default (the controller's samples and local search around the best);
- ``random``: uniform draws from the offline space.

Per arm: the quality curve (test accuracy of the validation-best candidate after k evaluations; test
accuracy steers nothing), the valid rate (evaluations that trained OK; the model's proposals rejected
before the sandbox are counted apart, they do not spend the budget), novelty (for each candidate that
built, the ``nn.`` layers changed from the closest program seen earlier in the run or, for llm-warm, in
its warm start; and how many were verbatim copies of a warm-start program), LoRA rounds and wall time.

    python bench/llm_race.py --task digits-hard --budget 16 --finetune-every 4 --out DIR [--arms ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import nas_tasks  # noqa: E402
from real_model import _code, finetune_round, layer_edits, layers, offline_traces  # noqa: E402
from search_table import curve, evaluations, reached  # noqa: E402

ARMS = ("llm", "llm-warm", "local", "random")


def config(arm: str, task: nas_tasks.Task, data, args, *, seed: int, budget: int, model: Path | None = None):
    """The run settings of an arm; ``model``: the local model folder of an llm arm."""
    from llmnas.config import RunConfig

    llm = {}
    if model is not None:
        llm = {
            "llm": f"hf:{model}",
            "llm_mode": "completion",
            "llm_max_tokens": args.max_tokens,
            "finetune_every": args.finetune_every,
            "finetune_steps": args.finetune_steps,
            "finetune_rank": args.finetune_rank,
            "finetune_top_fraction": args.finetune_top,
        }
    return RunConfig(
        requirements=f"classify into {data.num_classes} classes; under {task.max_params} parameters",
        seed=seed,
        budget=budget,
        workers=2,
        train=task.train,
        strategy="random" if arm == "random" else "local",
        **llm,
    )


def search(cfg, data, out: Path) -> float:
    """The product's run of ``cfg`` on the task's data (its splits, as bench/search_table.py's runs have
    them) in ``out``; its wall time."""
    import llmnas.run as run

    run.load_data = lambda cfg: data
    start = time.perf_counter()
    run.start(cfg, out, progress=False, announce=lambda _: None)
    return time.perf_counter() - start


def warm_model(task: nas_tasks.Task, data, args, out: Path) -> tuple[Path, dict]:
    """``--warm N``: the base model after one LoRA round on the passing programs of an offline search of N
    candidates on the task (seed + 1000: programs the offline arms of the race do not see), written as
    bench/real_model.py seeds them, merged into its weights and saved as a model folder. What the round
    measured."""
    from fakes import gemma

    from llmnas.llm.local import HFChat
    from llmnas.run import make_spec

    cfg = config("local", task, data, args, seed=args.seed + 1000, budget=args.warm)
    seconds = search(cfg, data, out / "seeds")
    chat = HFChat(str(gemma.hf_folder()), device="cpu", mode="completion")
    spec = make_spec(cfg, data, None, announce=lambda _: None)
    seeded = offline_traces(out / "seeds", chat, spec=spec)
    # real_model's round on the seeds alone (no runs of its own); its index is the round's seed
    row = finetune_round(chat, [], argparse.Namespace(out=out, steps=args.warm_steps), args.seed, {}, seeded)
    folder = out / "model"
    chat.model.merge_and_unload().save_pretrained(folder)
    chat.tokenizer.save_pretrained(folder)
    return folder, {"search_seconds": round(seconds, 1), **row}


def race_arm(arm: str, task: nas_tasks.Task, data, args, out: Path, model: Path | None = None) -> dict:
    """One arm's run in ``out``; what it measured."""
    cfg = config(arm, task, data, args, seed=args.seed, budget=args.budget, model=model)
    seconds = search(cfg, data, out)
    return {**measure(out, task, args.budget, _seeds(arm, args)), "seconds": round(seconds, 1)}


def _seeds(arm: str, args) -> dict[str, list[str]] | None:
    return warm_seeds(args.out / "warm") if arm == "llm-warm" else None


def warm_seeds(folder: Path) -> dict[str, list[str]]:
    """The programs the warm start was trained on (``warm_model``'s round): candidate id -> layers."""
    rows = [json.loads(line) for f in folder.glob("adapters/*/train.jsonl") for line in f.open()]
    return {r["candidate_id"]: layers("".join(m["content"] for m in r["completion"])) for r in rows}


def measure(out: Path, task: nas_tasks.Task, budget: int, seeds: dict[str, list[str]] | None = None) -> dict:
    """What the run in ``out`` measured, from its log and candidate files; ``seeds``: the programs its model
    was trained on before the run (they count as seen: novelty is measured against them too)."""
    from llmnas.runs.events import FinetuneEvent, LLMCallEvent, ProposalEvent, replay
    from llmnas.runs.layout import RunLayout

    log = replay(RunLayout(out).events)
    evals = evaluations(log)
    proposals = log.of(ProposalEvent)
    seen: list[list[str]] = list((seeds or {}).values())
    edits = []
    for e in evals:  # in proposal order: each built program against every program before it
        code = _code(out, e["id"])
        if code is None:
            continue
        if (e["ok"] or e["stage"] == "budget") and seen:
            edits.append(min(layer_edits(layers(code), s) for s in seen))
        seen.append(layers(code))
    calls = log.of(LLMCallEvent)
    c = curve(evals, budget)
    return {
        "curve": [None if np.isnan(x) else float(x) for x in c],
        "to_target": None if np.isinf(hit := reached(c, task.target)) else int(hit),
        "proposals": len(proposals),
        "repairs": sum(p.operator == "repair" for p in proposals),
        "duplicates": sum(p.stage == "duplicate" for p in proposals),
        "rejected_before_sandbox": sum(p.stage not in (None, "duplicate") for p in proposals),
        "evaluations": len(evals),
        "trained_ok": sum(e["ok"] for e in evals),
        "stages": {
            s: sum(e["stage"] == s for e in evals) for s in {e["stage"] for e in evals if not e["ok"]}
        },
        "layer_edits": sorted(edits),
        "seed_copies": sum(e["id"] in (seeds or {}) for e in evals),
        "lora_rounds": [
            {"ok": f.ok, "after": f.evaluations, "error": f.error, **f.stats} for f in log.of(FinetuneEvent)
        ],
        "llm_tokens": sum(c.completion_tokens for c in calls),
        "llm_seconds": round(sum(c.seconds for c in calls), 1),
    }


def table(task: nas_tasks.Task, rows: dict[str, dict], budget: int) -> list[str]:
    ks = [k for k in (4, 8, 12, 16, 24, 32, 40) if k <= budget]
    lines = [
        f"{task.name}: target test accuracy {task.target} (fixed before these runs), {budget} evaluations",
        "  arm       "
        + "".join(f"k={k:<7}" for k in ks)
        + "to target  proposed  duplicates  trained OK  seed copies  edits (median)  LoRA rounds  wall",
    ]
    for arm, r in rows.items():
        c = r["curve"]
        cols = "".join("-        " if c[k - 1] is None else f"{c[k - 1]:<9.3f}" for k in ks)
        edits = f"{np.median(r['layer_edits']):g}" if r["layer_edits"] else "-"
        lines.append(
            f"  {arm:<9} {cols}{r['to_target'] or 'missed':<10} {r['proposals']:<9} {r['duplicates']:<11} "
            f"{r['trained_ok']}/{r['evaluations']:<8} {r.get('seed_copies', 0):<12} {edits:<15} "
            f"{len(r['lora_rounds']):<12} {r['seconds']:.0f} s"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="digits-hard", choices=sorted(nas_tasks.TASKS))
    ap.add_argument("--budget", type=int, default=16, help="evaluations per arm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--finetune-every", type=int, default=4, help="K: a LoRA round every K evaluations")
    ap.add_argument("--finetune-steps", type=int, default=20)
    ap.add_argument("--finetune-rank", type=int, default=8)
    ap.add_argument(
        "--finetune-top",
        type=float,
        default=1.0,
        help="share of its passing outputs a round trains on (the product's 0.25 needs 16 passing "
        "candidates before the 4 examples a round needs: more than this budget has)",
    )
    ap.add_argument(
        "--warm",
        type=int,
        default=24,
        metavar="N",
        help="llm-warm: first one LoRA round on the passing programs of an offline search of N candidates",
    )
    ap.add_argument("--warm-steps", type=int, default=40, help="steps of that round")
    ap.add_argument("--max-tokens", type=int, default=512, help="longest reply, in tokens")
    ap.add_argument("--out", type=Path, default=Path("results/bench-llm-race"))
    ap.add_argument(
        "--remeasure",
        action="store_true",
        help="run nothing: measure the finished arms in --out again from their run folders (wall time kept)",
    )
    args = ap.parse_args()
    task = nas_tasks.TASKS[args.task]
    data = task.load()
    path = args.out / "race.json"
    rows = json.loads(path.read_text())["arms"] if path.is_file() else {}
    if args.remeasure:
        for arm, row in rows.items():
            row.update(measure(args.out / arm, task, args.budget, _seeds(arm, args)))
        path.write_text(json.dumps({**json.loads(path.read_text()), "arms": rows}))
        print("\n".join(table(task, rows, args.budget)))
        return
    for arm in args.arms:
        folder = args.out / arm
        if folder.exists():
            sys.exit(
                f"{folder} exists: a finished arm is kept in race.json; remove the folder to run it again"
            )
        model, warm = None, {}
        if arm.startswith("llm"):
            from fakes import gemma

            if reason := gemma.missing():
                sys.exit(reason)
            model = gemma.hf_folder()
        if arm == "llm-warm":
            model, warm = warm_model(task, data, args, args.out / "warm")
        rows[arm] = {**race_arm(arm, task, data, args, folder, model), **({"warm": warm} if warm else {})}
        print(arm, json.dumps({k: v for k, v in rows[arm].items() if k != "curve"}), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "arms": rows}))
    print("\n".join(table(task, rows, args.budget)))


if __name__ == "__main__":
    main()
