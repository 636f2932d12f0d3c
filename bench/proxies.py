"""Zero-cost proxies and the learned predictor against trained accuracy, and what pre-screening with
them saves and costs.

Samples N architectures uniformly from the offline search space, evaluates each through the real
sandbox (proxies + budgeted training), then reports

1. each proxy's Kendall tau and Spearman rho against trained validation accuracy over all candidates
   (#params and FLOPs as baselines);
2. held-out Kendall tau over random half/half splits: the predictor (llmnas.engine.predictor) fitted on
   one half, against the zero-cost proxy that ranked best on that half and against #params, all scored
   on the other half;
3. pre-screening simulated over random orders: rounds of R candidates where only the top half is trained,
   by each proxy and by the predictor as a run uses it (refitted each round on the candidates trained in
   earlier rounds, FLOPs until it has enough) — training time saved, best accuracy lost.

    python bench/proxies.py [--data mnist1d] [--n 60] [--steps 1500] [--save rows.json | --load rows.json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from llmnas.candidate import checks as validate
from llmnas.engine.predictor import AccuracyPredictor, fallback_score
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
                features = {"params": m.params, "flops": m.flops, "depth": m.depth, "proxies": m.proxies}
                rows.append({"val_acc": acc, "train_seconds": m.train_seconds, **features})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--round", type=int, default=4, help="candidates per pre-screening round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", type=int, default=50, help="random half/half splits for held-out tau")
    ap.add_argument("--orders", type=int, default=50, help="random orders for the pre-screening simulation")
    ap.add_argument("--save", type=Path, help="write the evaluated candidates here (JSON)")
    ap.add_argument("--load", type=Path, help="analyse candidates saved by --save instead of training")
    args = ap.parse_args()
    t0 = time.time()
    if args.load:
        rows = json.loads(args.load.read_text())
        print(f"{len(rows)} trained candidates loaded from {args.load}")
    else:
        rows = evaluate_all(load_dataset(args.data, seed=args.seed), args.n, args.steps, args.seed)
        print(
            f"{len(rows)} trained candidates on {args.data} ({args.steps} steps each) in {time.time() - t0:.0f} s"
        )
        if args.save:
            args.save.write_text(json.dumps(rows))
    acc = np.array([r["val_acc"] for r in rows])
    print(f"val acc: min {acc.min():.3f}  median {np.median(acc):.3f}  max {acc.max():.3f}\n")
    rng = np.random.default_rng(args.seed)
    values = {name: np.array([_proxy(r, name) for r in rows]) for name in PROXIES}

    print(f"{'proxy':10} {'kendall tau':>12} {'spearman rho':>13}   (all candidates)")
    for name in PROXIES:
        ok = np.isfinite(values[name])
        tau = kendalltau(values[name][ok], acc[ok]).statistic
        rho = spearmanr(values[name][ok], acc[ok]).statistic
        print(f"{name:10} {tau:12.3f} {rho:13.3f}")

    taus = _held_out(rows, values, acc, rng, args.splits, args.seed)
    print(f"\nheld-out kendall tau, {args.splits} random half/half splits (mean, std):")
    for name, t in taus.items():
        print(f"  {name:42} {np.mean(t):6.3f}  {np.std(t):5.3f}")

    orders = [rng.permutation(len(rows)) for _ in range(args.orders)]
    print(f"\npre-screen keeping 1/2 of rounds of {args.round}, {args.orders} random orders:")
    print(f"{'rule':10} {'time saved':>10} {'best acc lost':>14} {'mean best lost':>15}")
    rules = {name: _by_values(np.where(np.isfinite(v), v, -np.inf)) for name, v in values.items()}
    rules["predictor"] = _by_predictor(rows, args.seed)
    for name, rule in rules.items():
        saved, lost, mean_lost = _prescreen(rows, rule, acc, orders, args.round)
        print(f"{name:10} {saved:10.0%} {lost:14.4f} {mean_lost:15.4f}")
    print(f"\n({time.time() - t0:.0f} s in all)")


def _proxy(row: dict, name: str) -> float:
    v = row[name] if name in ("params", "flops") else row["proxies"].get(name)
    return float(v) if v is not None else math.nan


def _tau(a, b) -> float:
    ok = np.isfinite(a)
    return float(kendalltau(a[ok], b[ok]).statistic)


def _held_out(rows, values, acc, rng, splits: int, seed: int) -> dict[str, list[float]]:
    """Held-out tau per split: the predictor fitted on the first half, the proxy with the best tau on
    the first half (chosen there, not on the held-out half), and #params; all on the second half."""
    out: dict[str, list[float]] = {
        "predictor": [],
        "best zero-cost proxy (chosen on fit half)": [],
        "params": [],
    }
    chosen: list[str] = []
    zero_cost = [n for n in PROXIES if n not in ("params", "flops")]
    for _ in range(splits):
        order = rng.permutation(len(rows))
        fit, test = order[: len(rows) // 2], order[len(rows) // 2 :]
        model = AccuracyPredictor(seed, min_evaluations=1)
        model.fit([(rows[i], acc[i]) for i in sorted(fit)])
        out["predictor"].append(_tau(np.array(model.predict([rows[i] for i in test])), acc[test]))
        best = max(zero_cost, key=lambda n: _tau(values[n][fit], acc[fit]))
        chosen.append(best)
        out["best zero-cost proxy (chosen on fit half)"].append(_tau(values[best][test], acc[test]))
        out["params"].append(_tau(values["params"][test], acc[test]))
        out.setdefault("flops", []).append(_tau(values["flops"][test], acc[test]))
    print("\nzero-cost proxy chosen on the fit half:", dict(sorted(Counter(chosen).items())))
    return out


def _by_values(values):
    return lambda chunk, trained: values[chunk]


def _by_predictor(rows, seed: int):
    """The run's rule: fit on the candidates trained so far (in order), FLOPs until MIN_EVALUATIONS."""

    def rank(chunk, trained):
        model = AccuracyPredictor(seed)
        if not model.fit([(rows[i], rows[i]["val_acc"]) for i in trained]):
            return np.array([fallback_score(rows[i]) for i in chunk])
        return np.array(model.predict([rows[i] for i in chunk]))

    return rank


def _prescreen(rows, rank, acc, orders, size: int) -> tuple[float, float, float]:
    """Over random orders: fraction of training time saved; best accuracy lost overall and per round.
    ``rank(chunk, trained)`` scores a round's candidates knowing which were trained before it."""
    seconds = np.array([r["train_seconds"] for r in rows])
    saved, lost_total, lost_rounds = [], [], []
    for order in orders:
        kept: list[int] = []
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            keep = max(1, math.ceil(len(chunk) / 2))
            best = chunk[np.argsort(-rank(chunk, kept), kind="stable")[:keep]]
            kept.extend(int(i) for i in best)
            lost_rounds.append(acc[chunk].max() - acc[best].max())
        saved.append(1 - seconds[kept].sum() / seconds.sum())
        lost_total.append(acc.max() - acc[kept].max())
    return float(np.mean(saved)), float(np.mean(lost_total)), float(np.mean(lost_rounds))


if __name__ == "__main__":
    main()
