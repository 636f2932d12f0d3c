"""Per-candidate overhead of the sandbox: warm zygote fork vs a fresh `python -m sandbox.worker`.

Runs the same trivial candidate (one training step) N times through each path of the local pool, one
worker, in one run, and prints the medians and their ratio; and what a pool's first candidate costs
when the process's warm template has to start, and when it is already warm (a second pool). Target: zygote <= 50 ms median and at
least 20x cheaper than a fresh process.

With ``--device cuda`` the candidates train on the GPU (one worker, the first visible GPU): the same
paths, plus CUDA's start in every candidate.

    python bench/sandbox_overhead.py [--n 20] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from llmnas.execute.local import LocalPool
from sandbox.protocol import Job, Limits, TrainConfig

TRIVIAL = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))
"""


def _write_data(folder: Path) -> None:
    folder.mkdir(mode=0o755, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.normal(size=(64, 8)).astype(np.float32),
        "train_y": rng.integers(0, 2, 64),
        "val_x": rng.normal(size=(16, 8)).astype(np.float32),
        "test_x": rng.normal(size=(16, 8)).astype(np.float32),
    }
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr, allow_pickle=False)
        (folder / f"{name}.npy").chmod(0o644)


def measure(mode: str, n: int, device: str = "cpu") -> tuple[float, list[float]]:
    """(the first call: zygote start plus one candidate, the per-candidate times after it), in ms."""
    gpus = 1 if device == "cuda" else 0
    with (
        LocalPool(1, Limits(timeout_s=60), mode=mode, gpus=gpus) as pool,
        tempfile.TemporaryDirectory() as out,
    ):
        _write_data(pool.data_dir)
        times, first = [], 0.0
        for i in range(n + 1):
            job = Job(
                candidate_id=f"bench{i}",
                code=TRIVIAL,
                data_dir=str(pool.data_dir),
                input_shape=(8,),
                num_classes=2,
                seed=i,
                train=TrainConfig(max_steps=1, eval_every=1),
                latency_runs=1,
                device=device,
            )
            t0 = time.perf_counter()
            result = pool.submit(job, Path(out) / job.candidate_id).result()
            elapsed = time.perf_counter() - t0
            if not result.ok or result.device != device:
                raise SystemExit(
                    f"{mode}: trivial candidate failed on {device}: {result.stage}: {result.message}"
                )
            if i:  # the first call starts the zygote: not per-candidate overhead
                times.append(elapsed * 1000)
            else:
                first = elapsed * 1000
        return first, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="candidates per path")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the candidates train")
    args = ap.parse_args()
    start, zygote = measure("zygote", args.n, args.device)
    again, _ = measure("zygote", 0, args.device)  # a second pool of this process: its template is warm
    _, fresh = measure("fresh", max(5, args.n // 2), args.device)
    print(f"device: {args.device}")
    z, f = statistics.median(zygote), statistics.median(fresh)
    print(
        f"zygote fork : median {z:7.1f} ms  (min {min(zygote):.1f}, max {max(zygote):.1f}, n={len(zygote)})"
    )
    print(
        f"zygote start: {start:7.1f} ms  (the first call: template start and warm-up, fork, view, one candidate)"
    )
    print(
        f"next pool   : {again:7.1f} ms  (its first call: a zygote forked from the warm template, one candidate)"
    )
    print(f"fresh python: median {f:7.1f} ms  (min {min(fresh):.1f}, max {max(fresh):.1f}, n={len(fresh)})")
    verdict = "PASS" if z <= 50 and f / z >= 20 else "FAIL"
    target = (
        f"target: zygote <= 50 ms and >= 20x  ->  {verdict}"
        if args.device == "cpu"
        else "(no target on cuda)"
    )
    print(f"ratio fresh/zygote: {f / z:.1f}x   {target}")


if __name__ == "__main__":
    main()
