"""Added cost per candidate of scoring in a fresh process (sandbox/score.py) instead of the training one.

Runs the same small candidate (one training step, 5 latency runs) N times through a one-worker zygote
pool and prints the median wall time per candidate. With ``--against REF`` it does the same with the
code of git commit REF (exported to a temporary folder) and prints the difference: run it against the
commit before the scorer to get the added cost.

    python bench/scoring_overhead.py [--n 30] [--against f0c28a7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SMALL_CNN = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes),
    )
"""


def _write_data(folder: Path) -> None:
    folder.mkdir(mode=0o755, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.normal(size=(256, 1, 8, 8)).astype(np.float32),
        "train_y": rng.integers(0, 10, 256),
        "val_x": rng.normal(size=(64, 1, 8, 8)).astype(np.float32),
        "test_x": rng.normal(size=(64, 1, 8, 8)).astype(np.float32),
    }
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr, allow_pickle=False)
        (folder / f"{name}.npy").chmod(0o644)


def measure(n: int) -> list[float]:
    """Wall ms per candidate through the zygote pool (the first, which starts the zygote, left out)."""
    from llmnas.execute.local import LocalPool
    from sandbox.protocol import Job, Limits, TrainConfig

    with LocalPool(1, Limits(timeout_s=60)) as pool, tempfile.TemporaryDirectory() as out:
        _write_data(pool.data_dir)
        times = []
        for i in range(n + 1):
            job = Job(
                candidate_id=f"bench{i}",
                code=SMALL_CNN,
                data_dir=str(pool.data_dir),
                input_shape=(1, 8, 8),
                num_classes=10,
                seed=i,
                train=TrainConfig(max_steps=1, eval_every=1),
                latency_runs=5,
            )
            t0 = time.perf_counter()
            result = pool.submit(job, Path(out) / job.candidate_id).result()
            elapsed = time.perf_counter() - t0
            if not result.ok:
                raise SystemExit(f"the candidate failed: {result.stage}: {result.message}")
            if i:
                times.append(elapsed * 1000)
        return times


def _at_commit(ref: str, n: int) -> float:
    """The median of this benchmark run with the code of commit ``ref``."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "archive", ref], cwd=root, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": tree}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--n", str(n), "--median-only"]
        out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True).stdout
        return float(out.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="candidates per measurement")
    ap.add_argument("--against", help="git commit to compare with (e.g. the one before the scorer)")
    ap.add_argument("--median-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    here = measure(args.n)
    median = statistics.median(here)
    if args.median_only:
        print(median)
        return
    q = statistics.quantiles(here, n=4)
    print(f"this tree : median {median:7.1f} ms per candidate  (IQR {q[2] - q[0]:.1f}, n={len(here)})")
    if args.against:
        base = _at_commit(args.against, args.n)
        print(f"{args.against:<10}: median {base:7.1f} ms per candidate")
        print(f"added cost of the separate scoring process: {median - base:+.1f} ms per candidate")


if __name__ == "__main__":
    main()
