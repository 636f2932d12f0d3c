"""llmnas: LLM-guided neural architecture search with a hard sandbox and honest scoring."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from llmnas.loop import SearchResult

__version__ = "0.1.0"


def search(
    requirements: str,
    *,
    data: str = "digits",
    budget: int = 24,
    seed: int = 0,
    llm: str = "offline",
    out: str | Path | None = None,
    progress: bool = False,
    **config,
) -> SearchResult:
    """Run a search from Python; ``config`` takes any other RunConfig field (workers, train, limits, ...).

    Returns a SearchResult with ``best`` (an archive Entry), ``front`` and ``run_dir``.
    """
    from llmnas.config import RunConfig
    from llmnas.run import start

    cfg = RunConfig(requirements=requirements, data=data, budget=budget, seed=seed, llm=llm, **config)
    return start(cfg, out, progress=progress, announce=lambda _: None)
