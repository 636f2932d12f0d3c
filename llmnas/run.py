"""Start and resume runs: the wiring between config, data, spec, proposer, executor and store."""

from __future__ import annotations

import logging
import platform
import re
import sys
from datetime import datetime
from pathlib import Path

from llmnas.config import RunConfig
from llmnas.datasets import Dataset, load_dataset
from llmnas.executor import LocalPool
from llmnas.loop import Search, SearchResult
from llmnas.offline import OfflineProposer, RandomProposer
from llmnas.proposer import Proposer
from llmnas.spec import TaskSpec, parse_requirements
from llmnas.store import RunStore

log = logging.getLogger("llmnas")


def load_data(cfg: RunConfig) -> Dataset:
    return load_dataset(
        cfg.data,
        seed=cfg.seed,
        label_column=cfg.label_column,
        data_root=cfg.data_root,
        max_samples=cfg.max_samples,
    )


def make_spec(cfg: RunConfig, data: Dataset) -> TaskSpec:
    """Rule-based parse, resolved against the data (the LLM parse joins in with the LLM backends)."""
    spec = parse_requirements(cfg.requirements)
    return spec.resolve(input_shape=data.input_shape, num_classes=data.num_classes, modality=data.modality)


def make_proposer(cfg: RunConfig, spec: TaskSpec) -> Proposer:
    if cfg.llm != "offline":
        raise ValueError(f"--llm {cfg.llm!r}: only 'offline' is available in this build")
    if cfg.strategy == "random":
        return RandomProposer(spec.modality, cfg.seed)
    return OfflineProposer(spec.modality, cfg.seed)


def default_run_dir(cfg: RunConfig, root: Path = Path("results")) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", Path(cfg.data).stem.lower()).strip("-") or "data"
    return root / f"{datetime.now():%Y%m%d-%H%M%S}-{slug}-s{cfg.seed}"


def _versions() -> dict:
    import torch

    from llmnas import __version__

    return {
        "llmnas": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def start(cfg: RunConfig, out: Path | None = None, *, progress: bool = True, announce=print) -> SearchResult:
    """A new run: parse, check the data, create the run folder, search."""
    data = load_data(cfg)
    spec = make_spec(cfg, data)
    announce("Task spec:\n  " + spec.summary().replace("\n", "\n  "))
    folder = Path(out) if out else default_run_dir(cfg)
    store = RunStore.create(
        folder,
        {
            "config": cfg.model_dump(mode="json"),
            "spec": spec.model_dump(mode="json"),
            "versions": _versions(),
            "seed": cfg.seed,
            "created": datetime.now(),
        },
        cfg.requirements,
    )
    announce(f"Run folder: {folder}")
    return _search(cfg, spec, data, store, progress)


def resume(folder: Path, *, budget: int | None = None, progress: bool = True, announce=print) -> SearchResult:
    """Continue a run from its folder: the last checkpoint plus the evaluations logged after it."""
    store = RunStore.open(folder)
    info = store.run_info
    cfg = RunConfig.model_validate(info["config"])
    if budget is not None:
        cfg = cfg.model_copy(update={"budget": budget})
        store.update_run_info(config=cfg.model_dump(mode="json"))
    spec = TaskSpec.model_validate(info["spec"])
    announce(f"Resuming {folder}")
    return _search(cfg, spec, load_data(cfg), store, progress)


def _search(cfg: RunConfig, spec: TaskSpec, data: Dataset, store: RunStore, progress: bool) -> SearchResult:
    proposer = make_proposer(cfg, spec)
    try:
        with LocalPool(cfg.workers, cfg.limits) as pool:
            data.write_worker_files(pool.data_dir)
            search = Search(cfg, spec, data, proposer, pool, store, progress=progress)
            return search.run(cfg.budget)
    except KeyboardInterrupt:
        print(
            f"\nStopped. Finished evaluations are saved in {store.folder}.\n"
            f"Resume with: llmnas resume {store.folder}",
            file=sys.stderr,
        )
        raise
    finally:
        store.close()
