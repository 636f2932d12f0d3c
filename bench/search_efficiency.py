"""Search efficiency: the default offline search (RL controller + mutations + policy + archive) against
random search over the same space, at equal candidate budgets, on several seeds.

Reports the best validation accuracy after n candidates (mean curve over seeds), the candidates needed
to reach a target validation accuracy (and the ratio random / default), and the default search's best
model: its test accuracy, parameters and the wall time of its run.

    python bench/search_efficiency.py [--seeds 0 1 2 3 4] [--budget 40] [--target 0.93]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from llmnas.config import RunConfig
from llmnas.run import start
from llmnas.runs.store import RunStore

REQUIREMENTS = "classify the 1-D signals into 10 classes; under 10k parameters"


def curve(run_dir: Path, budget: int) -> list[float]:
    """Best validation accuracy after each proposal (failures count as candidates too)."""
    events = RunStore(run_dir).events()
    acc = {
        e["candidate_id"]: e["metrics"]["val_acc"] for e in events if e["type"] == "evaluation" and e["ok"]
    }
    order = [e.get("candidate_id") for e in events if e["type"] == "proposal"][:budget]
    best, out = 0.0, []
    for cid in order:
        best = max(best, acc.get(cid, 0.0))
        out.append(best)
    return out + [best] * (budget - len(out))


def run_one(strategy: str, seed: int, budget: int, root: Path) -> dict:
    cfg = RunConfig(
        requirements=REQUIREMENTS, data="mnist1d", budget=budget, seed=seed, strategy=strategy, workers=2
    )
    t0 = time.time()
    result = start(cfg, root / f"{strategy}-s{seed}", progress=False, announce=lambda _: None)
    best = result.best
    return {
        "strategy": strategy,
        "seed": seed,
        "seconds": time.time() - t0,
        "curve": curve(result.run_dir, budget),
        "best_val": best.metrics["val_acc"] if best else 0.0,
        "best_test": best.metrics["test_acc"] if best else 0.0,
        "best_params": best.metrics["params"] if best else None,
    }


def needed(c: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(c) if v >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--target", type=float, default=0.93)
    ap.add_argument("--out", type=Path, help="keep the runs and a JSON summary here")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="llmnas-bench-"))
    rows = []
    for seed in args.seeds:
        for strategy in ("rl", "random"):
            row = run_one(strategy, seed, args.budget, root)
            rows.append(row)
            print(
                f"{strategy:6} seed {seed}: best val {row['best_val']:.4f} test {row['best_test']:.4f} "
                f"params {row['best_params']} in {row['seconds']:.0f} s; reaches {args.target} after "
                f"{needed(row['curve'], args.target)} candidates",
                flush=True,
            )
    (root / "summary.json").write_text(json.dumps(rows, indent=1))
    print(f"\nmean best validation accuracy after n candidates ({len(args.seeds)} seeds):")
    print(f"{'n':>4} {'rl':>7} {'random':>7}")
    curves = {s: np.mean([r["curve"] for r in rows if r["strategy"] == s], axis=0) for s in ("rl", "random")}
    for n in sorted({5, 10, 15, 20, 25, 30, 35, 40, args.budget} & set(range(1, args.budget + 1))):
        print(f"{n:>4} {curves['rl'][n - 1]:7.4f} {curves['random'][n - 1]:7.4f}")
    reach = {
        s: [needed(r["curve"], args.target) or args.budget * 2 for r in rows if r["strategy"] == s]
        for s in ("rl", "random")
    }
    print(
        f"\ncandidates to reach val {args.target} (median over seeds; never = 2x budget): "
        f"rl {np.median(reach['rl']):.0f}, random {np.median(reach['random']):.0f}, "
        f"ratio random/rl {np.median(reach['random']) / np.median(reach['rl']):.2f}"
    )
    best = max((r for r in rows if r["strategy"] == "rl"), key=lambda r: r["best_val"])
    print(
        f"default search's best model: test {best['best_test']:.4f} with {best['best_params']:,} params "
        f"(seed {best['seed']}, run took {best['seconds'] / 60:.1f} min on 2 workers); runs in {root}"
    )


if __name__ == "__main__":
    main()
