"""Search efficiency: the default offline search (`rl`) against random search (`random`: the same
operators, limits and budget accounting, chosen uniformly, nothing learned), on N seeds each.

The quality of a run after k candidates is the *test* accuracy of the model its *validation* accuracy
chose among the first k candidates counted against the budget (the search's own ranking rule,
metrics.rank_key; test accuracy never steers anything). Reported per strategy: that test accuracy
at k = 5, 10, 20, 40 and the budget (median over seeds, bootstrap 95% interval of the median), the paired
difference rl - random (same seed, same data split; mean over seeds with its bootstrap interval), the
candidates needed to reach ``--target`` test accuracy on that curve, and what the proposals were
(duplicates, over a hard limit before training, failures), counted apart.

    python bench/search_efficiency.py [--data digits|mnist1d] [--seeds 10] [--budget 40] [--steps N]
                                      [--params N] [--strategies rl random] [--target T] [--out DIR]
    python bench/search_efficiency.py --from DIR|FILE   # summarise an earlier call's summary.json again

With ``--out``, runs already there are resumed rather than started again (an interrupted bench goes on,
and a larger ``--seeds`` adds seeds to an earlier call's); their run time is the earlier call's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from itertools import groupby
from pathlib import Path

import numpy as np

from llmnas.config import RunConfig
from llmnas.engine.loop import REPROPOSALS
from llmnas.metrics import rank_key
from llmnas.run import resume, start
from llmnas.runs.events import EvaluationEvent, ProposalEvent, RoundEvent
from llmnas.runs.store import RunStore
from sandbox.protocol import TrainConfig

STRATEGIES = ("rl", "random")
# No latency limit (the demo has one): latency is wall time, and on a shared machine it would make the
# limits differ from run to run.
REQUIREMENTS = {
    "mnist1d": "classify the 1-D signals into 10 classes; under {params} parameters",
    "digits": "classify the 8x8 digit images into 10 classes; under {params} parameters",
}
# Targets fixed before the benchmark runs: the quality bar of bench/quality.py for digits; for MNIST-1D,
# the demo's test accuracy (0.957) rounded down.
TARGETS = {"mnist1d": 0.95, "digits": 0.97}
KINDS = ("proposals", "counted", "duplicates", "over_limit", "failed", "passed")
BOOTSTRAP = 10_000


def paid_for(run_dir: Path) -> tuple[list[EvaluationEvent | None], dict[str, int]]:
    """The proposals the budget paid for, in the order the search processed them (each one's evaluation,
    or None when it never reached the sandbox), and every proposal counted by what became of it.

    Free proposals are the loop's (engine/loop.Search.run_round): a duplicate proposed again (the first
    REPROPOSALS in a row) and a candidate over a hard limit before training (given back). Each round's
    total is checked against the loop's own counter, so a change to that rule stops this script instead
    of skewing the curve."""
    log = RunStore(run_dir).replay()
    evaluations = {e.candidate_id: e for e in log.of(EvaluationEvent)}
    proposed = {e.round - 1: e.proposed for e in log.of(RoundEvent)}  # logged as the rounds done so far
    counts = dict.fromkeys(KINDS, 0)
    order: list[EvaluationEvent | None] = []
    proposals = sorted(log.of(ProposalEvent), key=lambda p: (p.round, p.slot))
    for rnd, group in groupby(proposals, key=lambda p: p.round):
        if rnd not in proposed:
            continue  # the run stopped inside this round
        paid, repeats = 0, 0
        for p in group:
            e = evaluations.get(p.candidate_id) if p.stage is None else None
            over = e is not None and e.stage == "budget" and not e.metrics.train_steps
            free = over or (p.stage == "duplicate" and repeats < REPROPOSALS)
            repeats = repeats + 1 if p.stage == "duplicate" else 0
            counts["proposals"] += 1
            counts["duplicates"] += p.stage == "duplicate"
            counts["over_limit"] += over
            counts["passed"] += bool(e and e.ok)
            counts["failed"] += p.stage not in (None, "duplicate") or bool(e and not e.ok and not over)
            if not free:
                order.append(e)
                paid += 1
        if paid != proposed[rnd] - proposed.get(rnd - 1, 0):
            raise SystemExit(f"{run_dir}: round {rnd} paid for {paid} here; the run counted otherwise")
    counts["counted"] = len(order)
    return order, counts


def curves(order: list[EvaluationEvent | None], budget: int) -> dict[str, list[float]]:
    """After each of the first ``budget`` paid proposals: the validation and test accuracy of the model
    the validation ranking chose so far (NaN before the first passing candidate)."""
    best, val, test = None, [], []
    for e in order[:budget]:
        if e is not None and e.ok and (best is None or rank_key(e.metrics.model_dump()) < rank_key(best)):
            best = e.metrics.model_dump()
        val.append(best["val_acc"] if best else float("nan"))
        test.append(best["test_acc"] if best else float("nan"))
    pad = budget - len(val)
    return {"val": val + val[-1:] * pad, "test": test + test[-1:] * pad}


def run_one(args: argparse.Namespace, strategy: str, seed: int, earlier: dict) -> dict:
    """One run's row; a run already in ``args.out`` is resumed and keeps its ``earlier`` run time."""
    cfg = RunConfig(
        requirements=REQUIREMENTS[args.data].format(params=args.params),
        data=args.data,
        budget=args.budget,
        seed=seed,
        strategy=strategy,
        workers=args.workers,
        train=TrainConfig() if args.steps is None else TrainConfig(max_steps=args.steps),
    )
    folder, quiet = args.out / f"{strategy}-s{seed}", {"progress": False, "announce": lambda _: None}
    if (folder / "run.json").exists():
        resume(folder, **quiet)
        seconds = {"seconds": earlier["seconds"]} if "seconds" in earlier else {}
    else:
        t0 = time.perf_counter()
        start(cfg, folder, **quiet)
        seconds = {"seconds": time.perf_counter() - t0}
    return summarise(folder, strategy, seed, args.budget) | seconds


def summarise(run_dir: Path, strategy: str, seed: int, budget: int) -> dict:
    order, counts = paid_for(run_dir)
    return {"strategy": strategy, "seed": seed, "run": str(run_dir), **curves(order, budget), **counts}


def reached(curve: list[float], target: float) -> int | None:
    return next((k + 1 for k, v in enumerate(curve) if v >= target), None)


def interval(values: np.ndarray, stat, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of ``stat`` over the seeds."""
    idx = rng.integers(len(values), size=(BOOTSTRAP, len(values)))
    boot = np.array([stat(values[i]) for i in idx])
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def report(rows: list[dict], budget: int, target: float) -> str:
    rng = np.random.default_rng(0)  # the bootstrap's own seed: the same rows give the same intervals
    strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in rows)]
    by = {s: sorted((r for r in rows if r["strategy"] == s), key=lambda r: r["seed"]) for s in strategies}
    paired = len(strategies) == 2
    seeds = [r["seed"] for r in by[strategies[0]]]
    if paired and seeds != [r["seed"] for r in by["random"]]:
        raise SystemExit("both strategies need the same seeds (the difference is paired by seed)")
    out = [
        f"{len(seeds)} seeds x {tuple(strategies)}, budget {budget}; test accuracy of the model chosen by "
        "validation accuracy after k candidates: median [bootstrap 95% interval of the median]"
        + (
            "; rl - random: mean paired difference [95% interval]; seeds where rl is better/equal/worse"
            if paired
            else ""
        ),
        f"{'k':>4} "
        + " ".join(f"{s:>24}" for s in strategies)
        + (f" {'rl - random':>26} {'b/e/w':>8}" if paired else ""),
    ]
    for k in sorted({5, 10, 20, 40, budget} & set(range(1, budget + 1))):
        test = {s: np.array([r["test"][k - 1] for r in by[s]]) for s in strategies}
        cells = []
        for s in strategies:
            lo, hi = interval(test[s], np.nanmedian, rng)
            cells.append(f"{np.nanmedian(test[s]):.4f} [{lo:.4f}, {hi:.4f}]")
        line = f"{k:>4} " + " ".join(f"{c:>24}" for c in cells)
        if paired:
            diff = test["rl"] - test["random"]
            lo, hi = interval(diff, np.nanmean, rng)
            line += f" {f'{np.nanmean(diff):+.4f} [{lo:+.4f}, {hi:+.4f}]':>26}"
            line += f" {f'{(diff > 0).sum()}/{(diff == 0).sum()}/{(diff < 0).sum()}':>8}"
        out.append(line)
    never = budget + 1
    out.append(
        f"\ncandidates until the val-chosen model's test accuracy >= {target} (not reached = {never}):"
    )
    for s in strategies:
        need = np.array([reached(r["test"], target) or never for r in by[s]], dtype=float)
        lo, hi = interval(need, np.median, rng)
        out.append(
            f"  {s:6} median {np.median(need):.1f} [{lo:.1f}, {hi:.1f}], reached in {int((need < never).sum())}"
            f" of {len(need)} runs; per seed {[int(n) for n in need]}"
        )
    out.append("\nval accuracy of the chosen model at the budget (what the search saw), median:")
    for s in strategies:
        out.append(f"  {s:6} val {np.nanmedian([r['val'][-1] for r in by[s]]):.4f}")
    out.append("\nproposals per run (mean over seeds; counted = paid by the budget):")
    out.append("  " + " ".join(f"{k:>10}" for k in ("", *KINDS)))
    for s in strategies:
        out.append(
            "  " + " ".join([f"{s:>10}", *(f"{np.mean([r[k] for r in by[s]]):>10.1f}" for k in KINDS)])
        )
    seconds = {s: [r["seconds"] for r in by[s] if "seconds" in r] for s in strategies}
    if all(seconds.values()):
        out.append("\nmean run time: " + ", ".join(f"{s} {np.mean(t):.0f} s" for s, t in seconds.items()))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=tuple(REQUIREMENTS), default="mnist1d")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--steps", type=int, help="training steps per candidate (default: the run's default)")
    ap.add_argument("--params", default="10k", help="the parameter limit in the requirements (10k, 20k)")
    ap.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES), help="rl alone: its quality"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--target", type=float, help="test accuracy for candidates-to-target (default: TARGETS)")
    ap.add_argument("--out", type=Path, help="keep the runs and summary.json here")
    ap.add_argument(
        "--from", dest="again", type=Path, help="summarise again: an --out folder or its summary.json"
    )
    args = ap.parse_args()
    if args.again:
        path = args.again / "summary.json" if args.again.is_dir() else args.again
        saved = json.loads(path.read_text())
        settings = saved["settings"]
        print(json.dumps(settings))
        print(report(saved["rows"], settings["budget"], args.target or settings["target"]))
        return
    args.target = args.target or TARGETS[args.data]
    args.out = args.out or Path(tempfile.mkdtemp(prefix="llmnas-bench-"))
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "again")}
    saved = args.out / "summary.json"
    earlier = (
        {(r["strategy"], r["seed"]): r for r in json.loads(saved.read_text())["rows"]}
        if saved.exists()
        else {}
    )
    rows = []
    for seed in range(args.seeds):
        for strategy in args.strategies:
            rows.append(run_one(args, strategy, seed, earlier.get((strategy, seed), {})))
            r = rows[-1]
            print(
                f"{strategy:6} seed {seed}: test {r['test'][-1]:.4f} (val {r['val'][-1]:.4f}) after "
                f"{args.budget}; {r['duplicates']} duplicates, {r['over_limit']} over the limit; "
                f"{r['seconds']:.0f} s",
                flush=True,
            )
            saved.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    print(f"\nruns in {args.out}\n")
    print(report(rows, args.budget, args.target))


if __name__ == "__main__":
    main()
