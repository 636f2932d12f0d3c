"""Compound scaling against a fresh search, at equal candidate counts.

Per seed: a base search on MNIST-1D under 10k parameters (``--base`` candidates), then
``llmnas refine RUN "now under 50k parameters"`` for ``--refine`` more, which compound-scales the base
run's Pareto front first (operator "scale"); against a fresh search under 50k parameters with
``--base + --refine`` candidates, so both arms evaluate as many candidates. Reports the test accuracy of
each arm's validation-chosen model (test accuracy never steers), and each scaled model against its parent.
With ``--out``, runs already there are resumed rather than started again (an interrupted bench goes on).

    python bench/compound.py [--seeds 0 1] [--base 6] [--refine 6] [--max-steps 4000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from llmnas.config import RunConfig
from llmnas.engine.loop import SearchResult
from llmnas.run import refine, resume, start
from llmnas.runs.events import EvaluationEvent, ProposalEvent, replay
from llmnas.runs.layout import RunLayout
from sandbox.protocol import TrainConfig

TASK = "classify the 1-D signals into 10 classes"
QUIET = {"progress": False, "announce": lambda _: None}


def chosen(result: SearchResult) -> dict:
    """The validation-chosen model of a run: its accuracies and size."""
    best = result.best
    return {
        "val": best.metrics["val_acc"] if best else 0.0,
        "test": result.best_test_acc or 0.0,
        "params": int(best.metrics["params"]) if best else 0,
    }


def scaled(run_dir: Path) -> list[dict]:
    """Each "scale" proposal: its parent's and its own validation accuracy and size (None: it failed)."""
    log = replay(RunLayout(run_dir).events)
    done = {e.candidate_id: e for e in log.of(EvaluationEvent) if e.ok}

    def numbers(cid: str | None) -> tuple[float | None, int | None]:
        e = done.get(cid)
        return (e.metrics.val_acc, e.metrics.params) if e else (None, None)

    rows = []
    for e in log.of(ProposalEvent):
        if e.operator == "scale":
            (pv, pp), (v, p) = numbers(e.parents[0]), numbers(e.candidate_id)
            rows.append({"parent_val": pv, "parent_params": pp, "val": v, "params": p})
    return rows


def fresh_or_resumed(folder: Path, begin) -> SearchResult:
    """A run's result: resumed when ``folder`` holds one (an interrupted bench goes on), else ``begin()``."""
    return resume(folder, **QUIET) if (folder / "run.json").exists() else begin()


def run_seed(seed: int, base: int, more: int, train: TrainConfig, root: Path) -> dict:
    def cfg(limit: str, budget: int) -> RunConfig:
        return RunConfig(
            requirements=f"{TASK}; under {limit} parameters",
            data="mnist1d",
            budget=budget,
            seed=seed,
            workers=2,
            train=train,
        )

    t0 = time.time()
    base_run = fresh_or_resumed(
        root / f"base-s{seed}", lambda: start(cfg("10k", base), root / f"base-s{seed}", **QUIET)
    )
    t1 = time.time()
    folder = root / f"compound-s{seed}"

    def refined() -> SearchResult:
        shutil.copytree(base_run.run_dir, folder)
        return refine(folder, "now under 50k parameters", budget=more, **QUIET)

    compound = fresh_or_resumed(folder, refined)
    t2 = time.time()
    fresh = fresh_or_resumed(
        root / f"fresh-s{seed}", lambda: start(cfg("50k", base + more), root / f"fresh-s{seed}", **QUIET)
    )
    t3 = time.time()
    return {
        "seed": seed,
        "base": chosen(base_run),
        "compound": chosen(compound),
        "fresh": chosen(fresh),
        "scaled": scaled(folder),
        "minutes": {"base": (t1 - t0) / 60, "refine": (t2 - t1) / 60, "fresh": (t3 - t2) / 60},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--base", type=int, default=6, help="candidates of the 10k search")
    ap.add_argument("--refine", type=int, default=6, help="candidates after raising the limit to 50k")
    ap.add_argument(
        "--max-steps", type=int, default=TrainConfig().max_steps, help="training steps per candidate"
    )
    ap.add_argument("--out", type=Path, help="keep the runs and a JSON summary here")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="llmnas-bench-"))
    train = TrainConfig(max_steps=args.max_steps)
    rows = []
    for seed in args.seeds:
        row = run_seed(seed, args.base, args.refine, train, root)
        rows.append(row)
        line = ", ".join(
            f"{arm} test {row[arm]['test']:.4f} (val {row[arm]['val']:.4f}, {row[arm]['params']:,} params)"
            for arm in ("base", "compound", "fresh")
        )
        print(
            f"seed {seed}: {line}; minutes {json.dumps({k: round(v, 1) for k, v in row['minutes'].items()})}"
        )
        for s in row["scaled"]:
            child = "failed" if s["val"] is None else f"val {s['val']:.4f} at {s['params']:,} params"
            print(f"  scaled: parent val {s['parent_val']:.4f} at {s['parent_params']:,} params -> {child}")
    (root / "summary.json").write_text(json.dumps(rows, indent=1))
    mean = {arm: float(np.mean([r[arm]["test"] for r in rows])) for arm in ("base", "compound", "fresh")}
    wins = sum(r["compound"]["test"] > r["fresh"]["test"] for r in rows)
    ties = sum(r["compound"]["test"] == r["fresh"]["test"] for r in rows)
    kids = [s for r in rows for s in r["scaled"] if s["val"] is not None]
    gain = float(np.mean([s["val"] - s["parent_val"] for s in kids])) if kids else float("nan")
    print(
        f"\n{len(rows)} seeds, {args.base} + {args.refine} candidates vs {args.base + args.refine} fresh, "
        f"max_steps {args.max_steps}: mean test of the val-chosen model: base (10k) {mean['base']:.4f}, "
        f"refined with compound scaling {mean['compound']:.4f}, fresh search at 50k {mean['fresh']:.4f}; "
        f"compound wins {wins}, ties {ties}, loses {len(rows) - wins - ties}; scaled models: "
        f"{len(kids)} passed, mean val gain over their parents {gain:+.4f}; runs in {root}"
    )


if __name__ == "__main__":
    main()
