"""Candidates per minute: the local pool vs Ray on one node vs Ray on two nodes, same machine, same
candidates; and the time Ray adds to each candidate.

Each executor gets 2 workers and the same small real candidates (MLPs and CNNs of varied width) on
sklearn's digits with TrainConfig(max_steps=100). Start-up (cluster, actors, warm zygotes) is timed
apart: each worker first runs one trivial candidate, then the candidates are submitted at once and timed
until the last result lands in its run folder. Then ``--serial`` trivial candidates run one at a time:
the median wall time per candidate, and its difference from the local pool's, is the overhead Ray adds
(moving the job and the files, the actor call). Ray runs as real ``ray start`` nodes on this machine
(tests/fakes/ray_cluster.py): one node with 2 CPUs, then a head and a second node with 1 CPU each.

    python bench/executors.py [--n 16] [--serial 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.ray_cluster import LocalCluster, cluster_env  # noqa: E402

from llmnas.execute.local import LocalPool  # noqa: E402
from llmnas.task.datasets import load_dataset  # noqa: E402
from sandbox.protocol import Job, Limits, TrainConfig  # noqa: E402

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


def measure(name: str, make, data, codes: list[str], workers: int, serial: int) -> dict:
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
        nodes = {r.node for r in results}
        each = []
        for i in range(serial):
            t2 = time.perf_counter()
            if not ex.submit(job(f"s{i:02d}", TRIVIAL, 1), Path(out) / f"s{i:02d}").result().ok:
                raise SystemExit(f"{name}: a serial candidate failed")
            each.append(time.perf_counter() - t2)
    failed = [f"{r.candidate_id}: {r.stage}: {r.message}" for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{name}: {len(failed)} candidates failed, e.g. {failed[0]}")
    return {
        "startup": startup,
        "elapsed": elapsed,
        "rate": len(codes) / elapsed * 60,
        "serial": statistics.median(each),
        "nodes": len(nodes - {None}),
    }


def on_cluster(name: str, nodes: list[int], data, codes, limits, serial: int) -> dict:
    """``measure`` on a fresh cluster of ``ray start`` nodes with these CPU counts (2 workers in all)."""
    from llmnas.execute.ray import RayExecutor

    os.environ.update({k: v for k, v in cluster_env().items() if k.startswith("RAY_")})
    with LocalCluster() as cluster:
        cluster.head(cpus=nodes[0])
        for i, cpus in enumerate(nodes[1:]):
            cluster.add(f"n{i + 1}", cpus=cpus)
        cluster.wait_for(sum(nodes))
        return measure(name, lambda: RayExecutor(2, limits, address=cluster.address), data, codes, 2, serial)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="candidates")
    ap.add_argument("--serial", type=int, default=8, help="trivial candidates run one at a time")
    args = ap.parse_args()
    data = load_dataset("digits", seed=0)
    codes = candidates(args.n)
    limits = Limits(timeout_s=120)
    rows = {
        "local pool": measure("local", lambda: LocalPool(2, limits), data, codes, 2, args.serial),
        "ray 1 node": on_cluster("ray 1 node", [2], data, codes, limits, args.serial),
        "ray 2 nodes": on_cluster("ray 2 nodes", [1, 1], data, codes, limits, args.serial),
    }
    print(f"{args.n} candidates, digits, TrainConfig(max_steps=100), 2 workers, {os.cpu_count()} CPUs")
    for name, r in rows.items():
        print(
            f"{name:11s}: {r['rate']:6.1f} candidates/min  ({r['elapsed']:.1f} s for {args.n} on "
            f"{r['nodes'] or 'this'} node(s); start-up {r['startup']:.1f} s); one at a time "
            f"{r['serial'] * 1000:.0f} ms per candidate"
        )
    local = rows["local pool"]
    for name in ("ray 1 node", "ray 2 nodes"):
        r = rows[name]
        print(
            f"{name}: rate ratio ray/local {r['rate'] / local['rate']:.2f}; per-candidate overhead "
            f"{(r['serial'] - local['serial']) * 1000:+.0f} ms"
        )
    print(f"load average now: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
