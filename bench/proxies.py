"""Zero-cost proxies against trained accuracy, and what pre-screening with them saves and costs.

Samples N architectures uniformly from the offline search space, evaluates each through the real
sandbox (proxies + budgeted training), then reports each proxy's Kendall tau and Spearman rho against
trained validation accuracy (#params and FLOPs as baselines), and simulates pre-screening: rounds of
R candidates where only the top half by the proxy is trained — training time saved, best accuracy lost.

    python bench/proxies.py [--data mnist1d] [--n 60] [--steps 1500]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from llmnas.candidate import checks as validate
from llmnas.engine.scoring import score
from llmnas.execute.local import LocalPool
from llmnas.propose import space
from llmnas.task.datasets import load_dataset
from sandbox.protocol import Job, Limits, TrainConfig

PROXIES = ("synflow", "naswot", "grad_norm", "snip", "params", "flops")


def evaluate_all(data, n: int, steps: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    with LocalPool(2, Limits(timeout_s=300)) as pool, tempfile.TemporaryDirectory() as out:
        data.write_worker_files(pool.data_dir)
        futures = []
        while len(futures) < n:
            checked = validate.check(space.render(data.modality, space.sample_uniform(data.modality, rng)))
            if checked.candidate_id in seen:
                continue
            seen.add(checked.candidate_id)
            job = Job(
                candidate_id=checked.candidate_id,
                code=checked.code,
                data_dir=str(pool.data_dir),
                input_shape=data.input_shape,
                num_classes=data.num_classes,
                seed=seed,
                proxies=PROXIES,
                train=TrainConfig(max_steps=steps),
                latency_runs=5,
            )
            folder = Path(out) / checked.candidate_id
            futures.append((folder, pool.submit(job, folder)))
        for folder, fut in futures:
            r = fut.result()
            if r.ok:
                m = r.metrics
                acc = score(folder, data, m.params)["val_acc"]
                rows.append({"val_acc": acc, "train_seconds": m.train_seconds, **m.proxies})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--round", type=int, default=4, help="candidates per pre-screening round")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = load_dataset(args.data, seed=args.seed)
    t0 = time.time()
    rows = evaluate_all(data, args.n, args.steps, args.seed)
    acc = np.array([r["val_acc"] for r in rows])
    print(
        f"{len(rows)} trained candidates on {args.data} ({args.steps} steps each) in {time.time() - t0:.0f} s"
    )
    print(f"val acc: min {acc.min():.3f}  median {np.median(acc):.3f}  max {acc.max():.3f}\n")
    print(
        f"{'proxy':10} {'kendall tau':>12} {'spearman rho':>13}   pre-screen keep 1/2 of rounds of {args.round}:"
    )
    print(f"{'':10} {'':>12} {'':>13}   {'time saved':>10} {'best acc lost':>14} {'mean best lost':>15}")
    rng = np.random.default_rng(args.seed)
    orders = [rng.permutation(len(rows)) for _ in range(200)]
    for name in PROXIES:
        values = np.array([r.get(name, np.nan) for r in rows], dtype=float)
        ok = np.isfinite(values)
        tau = kendalltau(values[ok], acc[ok]).statistic
        rho = spearmanr(values[ok], acc[ok]).statistic
        saved, lost, mean_lost = _prescreen(rows, np.where(ok, values, -np.inf), acc, orders, args.round)
        print(f"{name:10} {tau:12.3f} {rho:13.3f}   {saved:10.0%} {lost:14.4f} {mean_lost:15.4f}")


def _prescreen(rows, values, acc, orders, size: int) -> tuple[float, float, float]:
    """Over random orders: fraction of training time saved; best accuracy lost overall and per round."""
    seconds = np.array([r["train_seconds"] for r in rows])
    saved, lost_total, lost_rounds = [], [], []
    for order in orders:
        kept = []
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            keep = max(1, math.ceil(len(chunk) / 2))
            best = chunk[np.argsort(-values[chunk], kind="stable")[:keep]]
            kept.extend(best)
            lost_rounds.append(acc[chunk].max() - acc[best].max())
        saved.append(1 - seconds[kept].sum() / seconds.sum())
        lost_total.append(acc.max() - acc[kept].max())
    return float(np.mean(saved)), float(np.mean(lost_total)), float(np.mean(lost_rounds))


if __name__ == "__main__":
    main()
