"""Candidates per minute: the local pool vs the Ray executor, same machine, same candidates, one run.

Each executor gets 2 workers and the same 16 small real candidates (MLPs and CNNs of varied width) on
sklearn's digits with TrainConfig(max_steps=100). Start-up (Ray instance, actors, warm zygotes) is timed
apart: each worker first runs one trivial candidate, then the 16 are submitted at once and timed until
the last result lands in its run folder. Ray runs a private local instance (2 CPUs, no dashboard).

    python bench/executors.py [--workers 2] [--n 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import as_completed
from pathlib import Path

from llmnas.execute.local import LocalPool
from llmnas.task.datasets import load_dataset
from sandbox.protocol import Job, Limits, TrainConfig

MLP = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, {w}), nn.ReLU(), nn.Linear({w}, num_classes))
"""

CNN = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(
        nn.Conv2d(input_shape[0], {w}, 3, padding=1), nn.BatchNorm2d({w}), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d({w}, {w2}, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear({w2}, num_classes),
    )
"""

TRIVIAL = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
"""


def candidates(n: int) -> list[str]:
    widths = [8, 16, 24, 32, 48, 64, 96, 128]
    codes = []
    for i in range(n):
        w = widths[(i // 2) % len(widths)]
        codes.append(MLP.format(w=w) if i % 2 == 0 else CNN.format(w=max(4, w // 4), w2=max(8, w // 2)))
    return codes


def measure(name: str, make, data, codes: list[str], workers: int) -> dict:
    t0 = time.perf_counter()
    with make() as ex, tempfile.TemporaryDirectory() as out:
        data.write_worker_files(ex.data_dir)

        def job(cid: str, code: str, steps: int) -> Job:
            return Job(
                candidate_id=cid,
                code=code,
                data_dir=str(ex.data_dir),
                input_shape=data.input_shape,
                num_classes=data.num_classes,
                seed=0,
                train=TrainConfig(max_steps=steps),
            )

        warm = [ex.submit(job(f"warm{i}", TRIVIAL, 1), Path(out) / f"warm{i}") for i in range(workers)]
        if not all(f.result().ok for f in warm):
            raise SystemExit(f"{name}: the warm-up candidate failed")
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        futures = [
            ex.submit(job(f"c{i:02d}", code, 100), Path(out) / f"c{i:02d}") for i, code in enumerate(codes)
        ]
        results = [f.result() for f in as_completed(futures)]
        elapsed = time.perf_counter() - t1
    failed = [f"{r.candidate_id}: {r.stage}: {r.message}" for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{name}: {len(failed)} candidates failed, e.g. {failed[0]}")
    return {"startup": startup, "elapsed": elapsed, "rate": len(codes) / elapsed * 60}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="workers per executor (and Ray CPUs)")
    ap.add_argument("--n", type=int, default=16, help="candidates")
    args = ap.parse_args()
    data = load_dataset("digits", seed=0)
    codes = candidates(args.n)
    limits = Limits(timeout_s=120)

    def make_ray():
        from llmnas.execute.ray import RayExecutor

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance
        ray_init = {"num_cpus": args.workers, "include_dashboard": False, "object_store_memory": 100 * 2**20}
        return RayExecutor(args.workers, limits, address="local", init_kwargs=ray_init)

    rows = {
        "local pool": measure("local", lambda: LocalPool(args.workers, limits), data, codes, args.workers),
        "ray": measure("ray", make_ray, data, codes, args.workers),
    }
    print(
        f"{args.n} candidates, digits, TrainConfig(max_steps=100), {args.workers} workers, {os.cpu_count()} CPUs"
    )
    for name, r in rows.items():
        print(
            f"{name:10s}: {r['rate']:6.1f} candidates/min  ({r['elapsed']:.1f} s for {args.n}; "
            f"start-up {r['startup']:.1f} s)"
        )
    ratio = rows["ray"]["rate"] / rows["local pool"]["rate"]
    print(f"ratio ray/local: {ratio:.2f}   load average now: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
