"""Added cost of bounding candidate text (issue 29, point 6): static checks, reply extraction and the
minimised parent code for prompts, in the driver's own process (before) and in the limited child of
llmnas/candidate/bounded.py (after).

Candidates: the models in bench/models, 12 random members of the offline search space, and the
code of the recorded replies in tests/fixtures/replies; replies: those recorded replies. Each is run
``--n`` times per path; the medians per call are printed, and the child's cold start once.

    python bench/static_checks.py [--n 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llmnas.candidate import bounded
from llmnas.candidate.checks import DEFAULT_ALLOWED_IMPORTS, check, check_unbounded
from llmnas.candidate.extract import Extracted, extract_code
from llmnas.candidate.parse_child import minimised
from llmnas.propose import space

ROOT = Path(__file__).resolve().parents[1]


def corpus() -> tuple[list[str], list[str]]:
    replies = [p.read_text() for p in sorted((ROOT / "tests/fixtures/replies").glob("*.md"))]
    codes = [p.read_text() for p in sorted((ROOT / "bench/models").glob("*.py"))]
    rng = np.random.default_rng(0)
    for modality in ("image", "sequence", "tabular"):
        codes += [space.render(modality, space.sample_uniform(modality, rng)) for _ in range(4)]
    for reply in replies:
        found = extract_code(reply)
        if isinstance(found, Extracted):
            codes.append(found.code)
    return codes, replies


def median_ms(fn: Callable[[str], object], texts: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        for text in texts:
            start = time.perf_counter()
            fn(text)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    codes, replies = corpus()
    sizes = sorted(len(c) for c in codes)
    print(
        f"{len(codes)} candidates ({sizes[0]:,} to {sizes[-1]:,} characters), {len(replies)} replies, n={args.n}"
    )

    start = time.perf_counter()
    check(codes[0])
    print(f"cold start of the parsing child (first check): {(time.perf_counter() - start) * 1e3:.0f} ms")

    allowed = DEFAULT_ALLOWED_IMPORTS
    rows = [
        ("static check", lambda c: check_unbounded(c, allowed), lambda c: check(c, allowed), codes),
        (
            "extract a reply",
            lambda r: extract_code(r, allowed),
            lambda r: bounded.extract(r, allowed),
            replies,
        ),
        ("minimise a parent", minimised, bounded.minimise, codes),
    ]
    print(f"{'':20} {'in process':>12} {'bounded':>12} {'added':>10}")
    for name, before, after, texts in rows:
        b, a = median_ms(before, texts, args.n), median_ms(after, texts, args.n)
        print(f"{name:20} {b:10.2f}ms {a:10.2f}ms {a - b:8.2f}ms")


if __name__ == "__main__":
    main()
