"""Search strategies compared on the evaluation tables of bench/nas_tasks.py (issue 30), many seeds each.

Each run is the real search loop (engine/loop.Search: policy, archive, proposer, de-duplication, rounds of
2, the budget's accounting) with one part replaced: instead of training a candidate in the sandbox, the
executor looks its decisions up in the task's evaluation table (bench/nas_table.lookup: the trained row
when the table has the point, the surrogate's prediction otherwise) and writes predictions that score
exactly that validation and test accuracy. So a run costs seconds, and a strategy can be run on 20+
seeds. ``scale`` changes code outside the space (no decisions to look up) and is left out of every
strategy here; ``mutate`` of a point of the space changes one of its decisions. Ablations drop one
component at a time (an operator, the learned policy over operators, the controller's learning).

The quality of a run after k candidates is the test accuracy of the candidate its validation accuracy
ranks first among the first k (test accuracy never steers anything). Per strategy: that curve, the
candidates needed to reach the task's target (fixed in bench/nas_tasks.py before these runs), and,
against random search on the same seeds, the ratio of candidates-to-target (bootstrap interval) and the
paired difference of the final test accuracy.

    python bench/search_table.py --task digits-hard [--seeds 20] [--budget 40] [--strategies ...] [--real]
    python bench/search_table.py --task digits-hard --curves A.json B.json   # runs split over processes
    python bench/search_table.py --task digits-hard --real --strategies local --keep OLD.json
                                                   # OLD.json's strategies (random) are not run again

``--real`` trains every candidate instead (in this process, as the table was built: nas_table.evaluate),
each point once per process: the confirmation of a table comparison with real training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from concurrent.futures import Future
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import nas_table  # noqa: E402
import nas_tasks  # noqa: E402

from llmnas.config import RunConfig  # noqa: E402
from llmnas.engine.loop import Search  # noqa: E402
from llmnas.engine.policy import Policy  # noqa: E402
from llmnas.execute.base import verdict  # noqa: E402
from llmnas.metrics import rank_key  # noqa: E402
from llmnas.propose import space  # noqa: E402
from llmnas.propose.evolution import canonical  # noqa: E402
from llmnas.propose.offline import OfflineProposer, RandomProposer  # noqa: E402
from llmnas.run import make_spec  # noqa: E402
from llmnas.runs.events import EvaluationEvent, ProposalEvent  # noqa: E402
from llmnas.runs.store import RunStore  # noqa: E402
from sandbox.protocol import (  # noqa: E402
    ONNX_FILE,
    PRED_FILES,
    RESULT_FILE,
    WEIGHTS_FILE,
    Job,
    Metrics,
    Result,
    Stage,
)

METHODS = ("evolve", "local", "predict")
BASE = ("generate", *METHODS, "mutate", "crossover", "simplify")  # the default's, but scale (see above)
# name -> (operators, learned policy, learned controller); "random" is RandomProposer with a uniform policy
STRATEGIES = {
    "default": (BASE, True, True),
    "random": None,
    "controller": (("generate",), True, True),  # REINFORCE with a baseline alone (Zoph & Le)
    "evolve": (("generate", "evolve"), True, True),
    "local": (("generate", "local"), True, True),
    "predict": (("generate", "predict"), True, True),
    "no-evolve": (tuple(o for o in BASE if o != "evolve"), True, True),
    "no-local": (tuple(o for o in BASE if o != "local"), True, True),
    "no-predict": (tuple(o for o in BASE if o != "predict"), True, True),
    "no-policy": (BASE, False, True),  # the operators chosen uniformly
    "no-controller": (BASE, True, False),  # generate samples without learning
    "old-default": (("generate", "mutate", "crossover", "simplify"), True, True),  # the operators before
    "methods": (("generate", *METHODS, "mutate"), True, True),
    "methods-only": (("generate", *METHODS), True, True),
}
BOOTSTRAP = 10_000


class TableExecutor:
    """The Executor seam over an evaluation table: a candidate's decisions are looked up, not trained."""

    device = "cpu"

    def __init__(self, task: str, data, data_dir: Path, measure):
        """``measure(task, point)``: ``lookup`` (the table) or ``trained`` (``--real``)."""
        self.task, self.data, self.data_dir, self.measure = task, data, data_dir, measure
        self.points: dict[str, tuple[int, ...]] = {}  # candidate id -> decisions, filled as proposed

    def capacity(self) -> int:
        return 2

    def close(self) -> None:
        pass

    def submit(self, job: Job, out_dir: Path) -> Future:
        out_dir.mkdir(parents=True, exist_ok=True)
        future: Future = Future()
        future.set_result(verdict(job, out_dir, lambda: self._result(job, out_dir)))
        return future

    def _result(self, job: Job, out: Path) -> Result:
        point = self.points.get(job.candidate_id)
        if point is None:
            return Result(
                candidate_id=job.candidate_id, ok=False, stage=Stage.crash, message="not in the space"
            )
        feasible, params, val, test = self.measure(self.task, point)
        if not feasible or val is None:
            stage, why = (
                (Stage.budget, f"params {params:,} > limit") if not feasible else (Stage.train, "failed")
            )
            return Result(candidate_id=job.candidate_id, ok=False, stage=stage, message=why)
        for split, acc, labels in (("val", val, self.data.y_val), ("test", test, self.data.y_test)):
            np.save(
                out / PRED_FILES[split],
                _logits(labels, acc, self.data.num_classes, point),
                allow_pickle=False,
            )
        (out / ONNX_FILE).write_bytes(repr(point).encode())
        (out / WEIGHTS_FILE).write_bytes(b"table")
        result = Result(
            candidate_id=job.candidate_id,
            ok=True,
            metrics=Metrics(params=params, flops=0, train_steps=1),
            artifact_sha256=hashlib.sha256(repr(point).encode()).hexdigest(),
            weights_sha256=hashlib.sha256(b"table").hexdigest(),
        )
        (out / RESULT_FILE).write_text(result.model_dump_json())
        return result


def _logits(labels: np.ndarray, acc: float, classes: int, point) -> np.ndarray:
    """Logits that are right on round(acc * n) rows (which ones: a hash of the point) and wrong elsewhere."""
    n = len(labels)
    seed = int(hashlib.sha256(repr(point).encode()).hexdigest()[:8], 16)
    right = np.zeros(n, bool)
    right[np.random.default_rng(seed).permutation(n)[: round(acc * n)]] = True
    out = np.zeros((n, classes), np.float32)
    out[np.arange(n), np.where(right, labels, (labels + 1) % classes)] = 10.0
    return out


def _proposer(strategy: str, modality: str, seed: int):
    spec = STRATEGIES[strategy]
    if spec is None:
        return RandomProposer(modality, seed)
    ops, _, controller = spec
    return OfflineProposer(modality, seed, learn_controller=controller, operators=ops)


@cache
def lookup(task: str, point: tuple[int, ...]) -> tuple[bool, int, float | None, float | None]:
    """nas_table.lookup, once per point: the surrogate is deterministic, and slow one row at a time."""
    return nas_table.lookup(task, point)


@cache
def _data(task: str):
    return nas_tasks.TASKS[task].load()


@cache
def _worker_files(task: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"llmnas-real-{task}-"))
    _data(task).write_worker_files(folder)
    return folder


@cache
def trained(task: str, point: tuple[int, ...]) -> tuple[bool, int, float | None, float | None]:
    """The point trained for real (training is deterministic: once per point is enough)."""
    t, data = nas_tasks.TASKS[task], _data(task)
    params = space.param_count(t.modality, point, data.input_shape, data.num_classes)
    if params > t.max_params:
        return False, params, None, None
    row = nas_table.evaluate(
        t, data, point, _worker_files(task), Path(tempfile.mkdtemp(prefix="llmnas-real-"))
    )
    return True, row.get("measured_params", params), row.get("val_acc"), row.get("test_acc")


def run(
    task: nas_tasks.Task, data, strategy: str, seed: int, budget: int, folder: Path, measure=lookup
) -> list[dict]:
    """One search; its evaluations in the order they were proposed (round, then slot)."""
    requirements = f"classify into {data.num_classes} classes; under {task.max_params} parameters"
    cfg = RunConfig(
        requirements=requirements, data="digits", seed=seed, budget=budget, workers=2, train=task.train
    )
    cfg = cfg.model_copy(update={"strategy": "random" if strategy == "random" else "rl"})
    spec = make_spec(cfg, data, None, announce=lambda _: None)
    store = RunStore.create(
        folder, {"config": cfg.model_dump(mode="json"), "spec": spec.model_dump(mode="json")}, requirements
    )
    executor = TableExecutor(task.name, data, folder / "data", measure)
    search = Search(
        cfg, spec, data, _proposer(strategy, spec.modality, seed), executor, store, progress=False
    )
    check = search._check  # the loop's own check names the candidate: note its decisions for the executor

    def noted(proposal):
        proposal, cid = check(proposal)
        if cid is not None and proposal.decisions:
            executor.points[cid] = canonical(spec.modality, proposal.decisions)
        return proposal, cid

    search._check = noted
    if STRATEGIES.get(strategy) and not STRATEGIES[strategy][1]:
        search.policy = Policy.uniform()
    search.run(budget)
    store.close()
    return evaluations(store.replay())


def evaluations(log) -> list[dict]:
    """A run log's evaluations in the order they were proposed (round, then slot), not completion order."""
    slot = {p.candidate_id: (p.round, p.slot) for p in log.of(ProposalEvent) if p.candidate_id}
    events = sorted(log.of(EvaluationEvent), key=lambda e: slot[e.candidate_id])
    return [
        {"id": e.candidate_id, "ok": e.ok, "stage": e.stage, **(e.metrics.numbers() if e.metrics else {})}
        for e in events
    ]


def curve(evaluations: list[dict], budget: int) -> np.ndarray:
    """Test accuracy of the validation-best passing candidate after k = 1..budget counted candidates."""
    out, best = np.full(budget, np.nan), None
    counted = [e for e in evaluations if not (e["stage"] == "budget" and not e.get("train_steps"))][:budget]
    for k, e in enumerate(counted):
        if e["ok"] and (best is None or rank_key(e) < rank_key(best)):
            best = e
        out[k] = best["test_acc"] if best else np.nan
    out[len(counted) :] = out[len(counted) - 1] if counted else np.nan
    return out


def reached(c: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(c >= target)
    return float(hit[0] + 1) if len(hit) else np.inf


def _interval(values: np.ndarray, stat, rng) -> tuple[float, float]:
    boots = [stat(values[rng.integers(len(values), size=len(values))]) for _ in range(BOOTSTRAP // 10)]
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def summarise(task: nas_tasks.Task, curves: dict[str, np.ndarray], budget: int) -> list[str]:
    rng = np.random.default_rng(0)
    lines, ks = [], [k for k in (5, 10, 20, 40, budget) if k <= budget]
    lines.append(
        f"{task.name}: target test accuracy {task.target} (fixed before these runs), budget {budget}"
    )
    lines.append("  strategy       " + "".join(f"k={k:<8}" for k in dict.fromkeys(ks)) + "to target (median)")
    base = np.array([reached(c, task.target) for c in curves["random"]])
    for name, c in curves.items():
        cols = "".join(f"{np.nanmean(c[:, k - 1]):<10.3f}" for k in dict.fromkeys(ks))
        hits = np.array([reached(x, task.target) for x in c])
        lines.append(
            f"  {name:<14} {cols}{np.median(hits):g} ({np.isfinite(hits).sum()}/{len(hits)} reached)"
        )
    lines.append(
        "  against random, same seeds: candidates-to-target ratio random/strategy (misses count as budget+1);"
    )
    lines.append("  final test accuracy difference strategy - random (mean, paired) [bootstrap 95%]")
    capped_base = np.minimum(base, budget + 1)
    for name, c in curves.items():
        if name == "random":
            continue
        hits = np.minimum(np.array([reached(x, task.target) for x in c]), budget + 1)

        def ratio(idx, hits=hits):
            return float(np.mean(capped_base[idx]) / np.mean(hits[idx]))

        idx = np.arange(len(hits))
        lo, hi = _interval(idx, ratio, rng)
        diff = c[:, budget - 1] - curves["random"][:, budget - 1]
        dlo, dhi = _interval(diff, np.mean, rng)
        lines.append(
            f"  {name:<14} ratio {ratio(idx):5.2f} [{lo:.2f}, {hi:.2f}]   final {np.mean(diff):+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=sorted(nas_tasks.TASKS))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--out", type=Path, help="write the curves here as JSON")
    ap.add_argument("--real", action="store_true", help="train every candidate instead of looking it up")
    ap.add_argument(
        "--curves",
        nargs="+",
        type=Path,
        help="run nothing: summarise these --out files together (seeds joined)",
    )
    ap.add_argument(
        "--keep",
        type=Path,
        help="an --out file of the same seeds: its strategies join the summary and are not run again",
    )
    args = ap.parse_args()
    task = nas_tasks.TASKS[args.task]
    if args.curves:
        saved = [json.loads(f.read_text()) for f in args.curves]
        arrays = {s: np.array([c for part in saved for c in part[s]]) for s in saved[0]}
        print("\n".join(summarise(task, arrays, args.budget)))
        return
    data = _data(args.task)
    kept = json.loads(args.keep.read_text()) if args.keep else {}
    if any(len(c) != args.seeds for c in kept.values()):
        sys.exit(f"{args.keep} does not hold {args.seeds} seeds for every strategy")
    strategies = [s for s in dict.fromkeys(["random", *args.strategies]) if s not in kept]
    curves: dict[str, list] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for s in strategies:
                evaluations = run(
                    task,
                    data,
                    s,
                    seed,
                    args.budget,
                    Path(tmp) / f"{s}-{seed}",
                    trained if args.real else lookup,
                )
                curves[s].append(curve(evaluations, args.budget))
            print(f"seed {seed} done", file=sys.stderr, flush=True)
    arrays = {s: np.array(c) for s, c in {**kept, **curves}.items()}
    if args.out:
        args.out.write_text(json.dumps({s: a.tolist() for s, a in arrays.items()}))
    print("\n".join(summarise(task, arrays, args.budget)))


if __name__ == "__main__":
    main()
