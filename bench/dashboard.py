"""What one poll of `llmnas dashboard` costs on a large run: a poll with nothing new, one after an event
(the run read again) and one after an event when the plots are due to be drawn again.

Writes a run of N candidates with the real RunStore into a temporary folder, then times
``Dashboard.state()``, which is what each browser poll of ``/state`` does.

    python bench/dashboard.py [--n 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from llmnas.report.dashboard import Dashboard
from llmnas.runs.events import EvaluationEvent, Metrics, ProposalEvent
from llmnas.runs.store import RunStore


def add(store: RunStore, index: int) -> None:
    cid = f"c{index:011d}"
    store.append(ProposalEvent(round=index // 4, slot=index % 4, candidate_id=cid, operator="mutate"))
    val = 0.5 + 0.45 * ((index * 7919) % 1000) / 1000
    m = Metrics(val_acc=val, test_acc=val, params=1000 + (index * 104729) % 50000, latency_ms=0.1, flops=1)
    store.append(
        EvaluationEvent(round=index // 4, candidate_id=cid, ok=index % 5 != 0, metrics=m, reward=val)
    )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="candidates in the run")
    ap.add_argument("--repeat", type=int, default=5, help="polls of each kind")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        info = {
            "config": {"budget": args.n + 2 * args.repeat, "data": "digits"},
            "spec": {"max_params": 40000},
        }
        store = RunStore.create(Path(tmp) / "run", info, "classify digits")
        for i in range(args.n):
            add(store, i)
        dash = Dashboard(Path(tmp))
        first = timed(dash.state)
        times: dict[str, list[float]] = {
            "nothing new": [],
            "new event, plots not due": [],
            "new event, plots drawn": [],
        }
        for i in range(args.repeat):
            times["nothing new"].append(timed(dash.state))
            dash.redraw_s = 3600
            add(store, args.n + 2 * i)
            times["new event, plots not due"].append(timed(dash.state))
            dash.redraw_s = 0
            add(store, args.n + 2 * i + 1)
            times["new event, plots drawn"].append(timed(dash.state))
        print(f"run of {args.n} candidates; first view {first:.0f} ms")
        for what, ms in times.items():
            print(f"poll, {what:25}: median {statistics.median(ms):7.1f} ms (n={args.repeat})")


if __name__ == "__main__":
    main()
