"""How many proposals a search wastes (duplicates, or over a hard limit before training) and how many
evaluations it spends, on `make demo`'s task and on a refine to "under 1500 parameters".

    python bench/wasted.py [--budget 40] [--refine-budget 6] [--out /tmp/wasted]

Reads only the run's log, so it works on run folders of any llmnas version (pass --runs to skip searching).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DEMO = "classify the 1-D signals into 10 classes; under 10k parameters; under 1 ms on CPU"


def wasted(run: Path, after_line: int = 0) -> dict:
    """Counts from events.jsonl lines after ``after_line``: proposals, duplicates, over a hard limit
    before training, and how many of those the budget paid for (the rest were re-proposed for free)."""
    lines = (run / "events.jsonl").read_text().splitlines()[after_line:]
    events = [json.loads(line) for line in lines if line.strip()]
    proposals = [e for e in events if e.get("type") == "proposal"]
    evaluations = [e for e in events if e.get("type") == "evaluation"]
    rounds = [e for e in events if e.get("type") == "round"]
    over = [
        e
        for e in evaluations
        if e.get("stage") == "budget" and not (e.get("metrics") or {}).get("train_steps")
    ]
    duplicates = [p for p in proposals if p.get("stage") == "duplicate"]
    trained = [e for e in evaluations if (e.get("metrics") or {}).get("train_steps")]
    counted = rounds[-1]["proposed"] - (_proposed_before(run, after_line) if after_line else 0)
    return {
        "proposals": len(proposals),
        "counted_against_budget": counted,
        "duplicates": len(duplicates),
        "over_limit_before_training": len(over),
        "wasted_budget": len(duplicates) + len(over) - (len(proposals) - counted),
        "trained": len(trained),
        "passed": sum(bool(e.get("ok")) for e in evaluations),
    }


def _proposed_before(run: Path, line: int) -> int:
    """The budget counter of the last round logged before ``line``."""
    head = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()[:line] if x.strip()]
    return [e for e in head if e.get("type") == "round"][-1]["proposed"]


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--refine-budget", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("/tmp/wasted"))
    ap.add_argument("--llmnas", default=f"{sys.executable} -m llmnas.cli", help="how to start llmnas")
    args = ap.parse_args()
    base = args.llmnas.split()
    run_dir = args.out / "demo"
    seconds = run(
        [
            *base,
            "search",
            DEMO,
            "--data",
            "mnist1d",
            "--budget",
            str(args.budget),
            "--seed",
            "0",
            "--out",
            str(run_dir),
            "--json",
        ]  # fmt: skip
    )
    demo = wasted(run_dir)
    before = len((run_dir / "events.jsonl").read_text().splitlines())
    run(
        [
            *base,
            "refine",
            str(run_dir),
            "under 1500 parameters",
            "--budget",
            str(args.refine_budget),
            "--json",
        ]
    )
    refine = wasted(run_dir, before)
    print(json.dumps({"demo": demo, "demo_seconds": round(seconds, 1), "refine_1500": refine}, indent=1))


if __name__ == "__main__":
    main()
