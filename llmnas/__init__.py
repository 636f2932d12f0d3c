"""llmnas: LLM-guided neural architecture search with a hard sandbox and honest scoring."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from llmnas.engine.loop import SearchResult

from llmnas.version import VERSION as __version__  # noqa: F401


def search(
    requirements: str,
    *,
    data: str = "digits",
    budget: int = 24,
    seed: int = 0,
    llm: str = "offline",
    out: str | Path | None = None,
    progress: bool = False,
    **settings,
) -> SearchResult:
    """Run a search from Python; ``settings`` takes the command line's names (``steps=200``,
    ``memory_mb=1024``, ``max_cost=2``) or any RunConfig field (``train={...}``).

    Returns a SearchResult with ``best`` (an archive Entry), ``front``, ``run_dir`` and ``best_test_acc``.
    """
    from llmnas.config import RunConfig
    from llmnas.run import start

    cfg = RunConfig.from_settings(
        requirements=requirements, data=data, budget=budget, seed=seed, llm=llm, **settings
    )
    return start(cfg, out, progress=progress, announce=lambda _: None)
