"""Evaluation tables for the benchmark tasks of bench/nas_tasks.py: every strategy comparison reads these
instead of training, so it can run on many seeds (issue 30).

    python bench/nas_table.py build TASK [--trained 300]   # resumable: a re-run skips the rows it has
    python bench/nas_table.py report [TASK ...]            # reference curve, headroom, surrogate error

``build`` samples decision tuples uniformly (``space.sample_uniform``, seeded), counts each one's
parameters with ``space.param_count`` and, when within the task's limit, trains it in this process with
the sandbox's own trainer and scorer (``sandbox.worker.run_job``, then ``llmnas.engine.scoring.score``),
until ``--trained`` tuples are trained. A tuple over the limit is kept as an infeasible row and not
trained: the search loop gives such a proposal back before any training too. Rows are written to
bench/data/tables/<task>.json as they come.

``lookup(task, decisions)`` answers for any tuple of the task's space: the table's row when it has one,
else a random forest's prediction fitted on the table's rows (deterministic). ``report`` measures that
surrogate against real training by 5-fold cross-validation and writes, into the table, the reference:
the expected test accuracy of the model random search picks by validation accuracy among k uniform
candidates (k = 1..100, feasible candidates only, as over-limit ones cost nothing), with the headroom
check of issue 30: best of 5 at least 3 points below best of 100; and the same curve for random search run
through ``lookup`` (the baseline a strategy compared through ``lookup`` must be held against, as the
surrogate shrinks the best networks' accuracies: bench/data/tables/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas_tasks import TASKS, Task  # noqa: E402

from llmnas.propose import space  # noqa: E402

TABLES = Path(__file__).resolve().parent / "data" / "tables"
TABLE_SEED = 0  # the uniform sample of the space
JOB_SEED = 0  # every candidate's training seed (weights, batches)
KS = tuple(range(1, 101))
RESAMPLES = 2000
HEADROOM = 0.03  # best of 5 must be at least this far below best of 100


# ------------------------------------------------------------------------------------------ the table


def table_path(name: str) -> Path:
    return TABLES / f"{name}.json"


def settings(task: Task, data) -> dict:
    """What a row's numbers depend on: a table built under other settings is not resumed."""
    digest = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        digest.update(np.ascontiguousarray(a).tobytes())
    return {
        "task": task.name,
        "about": task.about,
        "modality": task.modality,
        "max_params": task.max_params,
        "train": task.train.model_dump(),
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "sizes": {"train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test)},
        "data_sha256": digest.hexdigest(),
        "table_seed": TABLE_SEED,
        "job_seed": JOB_SEED,
        "threads": 1,
    }


def read_table(name: str) -> dict:
    return json.loads(table_path(name).read_text())


def _write(table: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    os.replace(tmp, path)


def evaluate(task: Task, data, decisions: tuple[int, ...], data_dir: Path, folder: Path) -> dict:
    """Train and score one tuple as the sandbox does, in this process."""
    import torch

    from llmnas.engine.scoring import score
    from sandbox.protocol import Job
    from sandbox.worker import run_job

    torch.set_num_threads(1)
    job = Job(
        candidate_id="c",
        code=space.render(task.modality, decisions),
        data_dir=str(data_dir),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=JOB_SEED,
        train=task.train,
        max_params=task.max_params,
        latency_runs=1,
    )
    start = time.perf_counter()
    result = run_job(job, folder)
    seconds = time.perf_counter() - start
    if not result.ok:
        return {"stage": str(result.stage), "message": result.message[:200], "seconds": round(seconds, 3)}
    s = score(folder, data)
    return {
        "val_acc": s["val_acc"],
        "val_loss": round(s["val_loss"], 5),
        "test_acc": s["test_acc"],
        "measured_params": result.metrics.params,
        "train_seconds": round(result.metrics.train_seconds, 3),
        "seconds": round(seconds, 3),
    }


def build(name: str, trained: int) -> dict:
    """Extend the task's table until ``trained`` tuples in it are trained (resuming what is there)."""
    task = TASKS[name]
    data = task.load()
    path = table_path(name)
    want = settings(task, data)
    table = read_table(name) if path.exists() else {"settings": want, "rows": []}
    if table["settings"] != want:
        sys.exit(f"{path} was built under other settings; move it away to build it again")
    rows = table["rows"]
    rng = np.random.default_rng(TABLE_SEED)
    seen: set[tuple[int, ...]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data.write_worker_files(data_dir)
        i = 0
        while sum(r["feasible"] for r in rows) < trained:
            decisions = space.sample_uniform(task.modality, rng)
            if decisions in seen:
                continue  # uniform sampling repeats a tuple now and then: one row each
            seen.add(decisions)
            i += 1
            if i <= len(rows):
                assert tuple(rows[i - 1]["decisions"]) == decisions, "the table's sample order changed"
                continue
            params = space.param_count(task.modality, decisions, data.input_shape, data.num_classes)
            row = {"decisions": list(decisions), "params": params, "feasible": params <= task.max_params}
            if row["feasible"]:
                folder = Path(tmp) / f"c{i}"
                folder.mkdir()
                row |= evaluate(task, data, decisions, data_dir, folder)
                if row.get("stage") == "budget":  # the worker's own count is over: given back, not trained
                    row["feasible"] = False
                done = sum(r["feasible"] for r in rows) + 1
                print(
                    f"{name} {done}/{trained}: params {params} val {row.get('val_acc', 0):.3f} "
                    f"test {row.get('test_acc', 0):.3f} {row['seconds']:.1f}s",
                    flush=True,
                )
            rows.append(row)
            _write(table, path)
    return table


# -------------------------------------------------------------------------------------- the surrogate


def features(modality: str, decisions, params: int) -> np.ndarray:
    """One-hot choices, blank for the blocks the tuple does not build, and log10 of the parameters."""
    v = space.values(modality, tuple(decisions))
    out = []
    for d, c in zip(space.decisions_for(modality), decisions, strict=True):
        block = d.name[-1].isdigit() and int(d.name[-1]) >= v["blocks"]
        one_hot = np.zeros(len(d.choices))
        if not block:
            one_hot[c] = 1.0
        out.append(one_hot)
    return np.concatenate([*out, [math.log10(params)]])


def trained_rows(table: dict) -> list[dict]:
    return [r for r in table["rows"] if r["feasible"] and "val_acc" in r]


def fit(table: dict, rows: list[dict] | None = None):
    """A random forest from features to (val_acc, test_acc); fixed seed, so the same rows give the same
    predictions."""
    from sklearn.ensemble import RandomForestRegressor

    modality = table["settings"]["modality"]
    rows = trained_rows(table) if rows is None else rows
    x = np.array([features(modality, r["decisions"], r["params"]) for r in rows])
    y = np.array([[r["val_acc"], r["test_acc"]] for r in rows])
    return RandomForestRegressor(n_estimators=300, min_samples_leaf=2, random_state=0, n_jobs=1).fit(x, y)


@cache
def _loaded(name: str):
    table = read_table(name)
    modality = table["settings"]["modality"]
    rows = {space.render(modality, tuple(r["decisions"])): r for r in table["rows"]}
    return table, rows, fit(table)


def lookup(name: str, decisions) -> tuple[bool, int, float | None, float | None]:
    """(feasible, params, val_acc, test_acc) of a tuple of the task's space: the table's row when it has
    one for the same network (the same rendered code: decisions of blocks not built do not matter), else
    the surrogate's prediction (None for the accuracies of an infeasible tuple or a row whose training
    failed). Training is deterministic at one thread: a row is what training that network again gives."""
    return lookup_many(name, [decisions])[0]


def lookup_many(name: str, tuples) -> list[tuple[bool, int, float | None, float | None]]:
    """``lookup`` of each tuple, the surrogate run once for all of them."""
    table, rows, model = _loaded(name)
    s = table["settings"]
    out, ask = [], []
    for decisions in tuples:
        decisions = tuple(int(c) for c in decisions)
        params = space.param_count(s["modality"], decisions, tuple(s["input_shape"]), s["num_classes"])
        if (r := rows.get(space.render(s["modality"], decisions))) is not None:
            out.append((r["feasible"], r["params"], r.get("val_acc"), r.get("test_acc")))
        elif params > s["max_params"]:
            out.append((False, params, None, None))
        else:
            out.append((True, params, None, None))
            ask.append((len(out) - 1, features(s["modality"], decisions, params)))
    if ask:
        pred = model.predict(np.array([f for _, f in ask]))
        for (i, _), (val, test) in zip(ask, pred, strict=True):
            out[i] = (True, out[i][1], float(val), float(test))
    return out


def surrogate_error(table: dict, folds: int = 5) -> dict:
    """5-fold cross-validation on the trained rows: MAE of val_acc and test_acc, and Kendall's tau between
    predicted and real val_acc over all held-out rows."""
    from scipy.stats import kendalltau

    rows = trained_rows(table)
    modality = table["settings"]["modality"]
    x = np.array([features(modality, r["decisions"], r["params"]) for r in rows])
    order = np.random.default_rng(0).permutation(len(rows))
    pred = np.zeros((len(rows), 2))
    for k in range(folds):
        held = order[k::folds]
        model = fit(table, [rows[i] for i in np.setdiff1d(order, held)])
        pred[held] = model.predict(x[held])
    real = np.array([[r["val_acc"], r["test_acc"]] for r in rows])
    mae = np.abs(pred - real).mean(axis=0)
    top = real[:, 0] >= np.quantile(real[:, 0], 0.9)  # the rows a good search must find
    return {
        "rows": len(rows),
        "val_mae": round(float(mae[0]), 4),
        "test_mae": round(float(mae[1]), 4),
        "val_kendall_tau": round(float(kendalltau(pred[:, 0], real[:, 0]).statistic), 3),
        "val_mae_top_decile": round(float(np.abs(pred[top, 0] - real[top, 0]).mean()), 4),
        "val_bias_top_decile": round(float((pred[top, 0] - real[top, 0]).mean()), 4),
        "val_std": round(float(real[:, 0].std()), 4),  # what predicting the mean would cost, roughly
    }


# -------------------------------------------------------------------------------------- the reference


def best_of_k(rows: list[dict], ks=KS, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Expected test accuracy of random search's pick after k uniform candidates, for each k: k of the
    feasible ``rows`` drawn with replacement (the table as a sample of the feasible space), the pick the
    loop's own rule makes (highest val_acc, then lowest val_loss, then fewest params); a failed row is
    drawn but never picked. Averaged over ``resamples`` draws."""
    key = np.array(
        [(r.get("val_acc", -1.0), -r.get("val_loss", math.inf), -r["params"]) for r in rows],
        dtype=[("acc", float), ("loss", float), ("params", float)],
    )
    rank = np.empty(len(rows), int)
    rank[np.argsort(key, order=("acc", "loss", "params"), kind="stable")] = np.arange(len(rows))
    test = np.array([r.get("test_acc", 0.0) for r in rows])
    by_rank = test[np.argsort(rank)]
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(rows), size=(resamples, max(ks)))
    best = np.maximum.accumulate(rank[draws], axis=1)  # the best rank among the first k drawn
    return np.array([by_rank[best[:, k - 1]].mean() for k in ks])


def random_through_lookup(name: str, seeds: int = 200, k: int = max(KS)) -> np.ndarray:
    """Random search as a strategy comparison will run it, through ``lookup`` (mostly the surrogate: the
    table holds few of the tuples drawn): for each seed, k uniform feasible tuples (over-limit ones are
    drawn again, as they cost nothing), the pick by validation accuracy after each; its test accuracy
    averaged over the seeds, for k = 1..``k``."""
    s = read_table(name)["settings"]
    picks = np.zeros((seeds, k))
    for seed in range(seeds):
        rng, found = np.random.default_rng(seed), []
        while len(found) < k:
            batch = lookup_many(name, [space.sample_uniform(s["modality"], rng) for _ in range(2 * k)])
            found += [(r[2], r[3]) for r in batch if r[0] and r[2] is not None]
        val, test = np.array(found[:k]).T
        best = np.array([np.argmax(val[: i + 1]) for i in range(k)])
        picks[seed] = test[best]
    return picks.mean(axis=0)


def report(name: str) -> dict:
    table = read_table(name)
    feasible = [r for r in table["rows"] if r["feasible"]]
    curve = best_of_k(feasible)
    rows = trained_rows(table)
    test = np.array([r["test_acc"] for r in rows])
    seconds = np.array([r["seconds"] for r in rows])
    gap = curve[99] - curve[4]
    # How much the gap owes to which rows the table happened to sample: the table's rows resampled.
    rng = np.random.default_rng(1)
    gaps = [
        np.ptp(
            best_of_k([feasible[i] for i in rng.integers(len(feasible), size=len(feasible))], (5, 100), 500)
        )
        for _ in range(200)
    ]
    out = {
        "sampled": len(table["rows"]),
        "trained": len(rows),
        "failed": sum(1 for r in table["rows"] if r["feasible"] and "val_acc" not in r),
        "infeasible_fraction": round(1 - sum(r["feasible"] for r in table["rows"]) / len(table["rows"]), 3),
        "seconds_per_trained": {
            "median": round(float(np.median(seconds)), 2),
            "mean": round(float(seconds.mean()), 2),
        },
        "test_acc_quantiles": {q: round(float(np.quantile(test, q / 100)), 4) for q in (10, 50, 90, 100)},
        "best_of_k": [round(float(c), 4) for c in curve],
        "headroom": {
            "best_of_5": round(float(curve[4]), 4),
            "best_of_100": round(float(curve[99]), 4),
            "gap": round(float(gap), 4),
            "gap_90_interval": [round(float(q), 4) for q in np.quantile(gaps, (0.05, 0.95))],
            "passes": bool(gap >= HEADROOM),
        },
        "surrogate": surrogate_error(table),
    }
    through = random_through_lookup(name)
    out["best_of_k_through_lookup"] = [round(float(c), 4) for c in through]
    out["headroom_through_lookup"] = {
        "best_of_5": round(float(through[4]), 4),
        "best_of_100": round(float(through[99]), 4),
        "gap": round(float(through[99] - through[4]), 4),
    }
    table["reference"] = out
    _write(table, table_path(name))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the task's table (resumable)")
    b.add_argument("task", choices=tuple(TASKS))
    b.add_argument("--trained", type=int, default=300, help="trained (feasible) rows to reach")
    r = sub.add_parser("report", help="reference curve, headroom and surrogate error; written to the table")
    r.add_argument("tasks", nargs="*", help="default: every task with a table")
    args = ap.parse_args(argv)
    if args.command == "build":
        build(args.task, args.trained)
        return
    for name in args.tasks or [n for n in TASKS if table_path(n).exists()]:
        out = report(name)
        h, s, t = out["headroom"], out["surrogate"], out["headroom_through_lookup"]
        print(
            f"{name}: {out['trained']} trained of {out['sampled']} sampled ({out['infeasible_fraction']:.0%} over "
            f"the limit), {out['seconds_per_trained']['median']}s each; test acc q10/50/90/max "
            f"{list(out['test_acc_quantiles'].values())}\n"
            f"  best of k: 1 {out['best_of_k'][0]:.3f}  5 {h['best_of_5']:.3f}  10 {out['best_of_k'][9]:.3f}  "
            f"20 {out['best_of_k'][19]:.3f}  50 {out['best_of_k'][49]:.3f}  100 {h['best_of_100']:.3f}  "
            f"gap {h['gap'] * 100:.1f} points (90% {h['gap_90_interval'][0] * 100:.1f}.."
            f"{h['gap_90_interval'][1] * 100:.1f}): {'PASSES' if h['passes'] else 'FAILS'} "
            f"(>= {HEADROOM * 100:.0f})\n"
            f"  surrogate (5-fold CV, {s['rows']} rows): val MAE {s['val_mae']:.3f}, test MAE "
            f"{s['test_mae']:.3f}, Kendall tau (val) {s['val_kendall_tau']:.2f}; val std {s['val_std']:.3f}; "
            f"top decile: val MAE {s['val_mae_top_decile']:.3f}, bias {s['val_bias_top_decile']:+.3f}\n"
            f"  random search through lookup (200 seeds): best of 5 {t['best_of_5']:.3f}, of 100 "
            f"{t['best_of_100']:.3f}, gap {t['gap'] * 100:.1f} points"
        )


if __name__ == "__main__":
    main()
