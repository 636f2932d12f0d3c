"""Added cost per candidate of scoring the artifact (issue 29): the ONNX export at the end of training,
the seal (SHA-256 of model.onnx and the weights, rewritten read-only) and the onnxruntime session, against
the candidate's whole evaluation, on the demo task (MNIST-1D, the offline space, the demo's training).

Each candidate runs in this process (``sandbox.worker.run_job``: both stages, unconfined, as the warm-up
does), with timers around ``artifact.write``, ``worker.seal`` and ``score.session``; the sandbox's process
start-up is not in either figure. Prints one line per candidate and the median share of the added cost.

    python bench/artifact_cost.py [--n 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from llmnas.config import RunConfig
from llmnas.propose import space
from llmnas.task.datasets import load_data
from sandbox import artifact, score, worker
from sandbox.protocol import Job

DEMO = RunConfig(requirements="classify the 1-D signals into 10 classes", data="mnist1d", seed=0)


def _timed(spent: dict[str, float], name: str, fn):
    def wrapped(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

    return wrapped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=8, help="candidates sampled from the offline space")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = load_data(DEMO)
    rng = np.random.default_rng(args.seed)
    spent: dict[str, float] = {}
    artifact.write = _timed(spent, "export", artifact.write)
    worker.seal = _timed(spent, "seal", worker.seal)
    score.session = _timed(spent, "session", score.session)
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data.write_worker_files(folder)
        worker.warm_up(Path(tempfile.mkdtemp(dir=tmp)))  # lazy imports and first-use costs, as the zygote
        for i in range(args.n):
            code = space.render("sequence", space.sample_uniform("sequence", rng))
            job = Job(
                candidate_id=f"bench{i}",
                code=code,
                data_dir=str(folder),
                input_shape=data.input_shape,
                num_classes=data.num_classes,
                seed=args.seed,
                train=DEMO.train,
            )
            work = Path(tempfile.mkdtemp(dir=tmp))
            spent.clear()
            t0 = time.perf_counter()
            result = worker.run_job(job, work)
            total = time.perf_counter() - t0
            added = sum(spent.values())
            shares.append(added / total)
            parts = "  ".join(f"{k} {v * 1000:6.0f} ms" for k, v in sorted(spent.items()))
            params = result.metrics.params if result.metrics else "-"
            print(
                f"candidate {i}: {total:6.2f} s  params {params:>7}  {parts}  added {100 * added / total:4.1f}%"
            )
    print(
        f"median added share: {100 * statistics.median(shares):.1f}% of a candidate's evaluation (n={args.n})"
    )


if __name__ == "__main__":
    main()
