"""Evaluate one hand-written model file through exactly the path a search uses; and the dry run, which
probes one of the offline proposer's candidates that way to estimate a search's time."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from llmnas.candidate import checks
from llmnas.config import RunConfig
from llmnas.engine.evaluation import judge, make_job
from llmnas.errors import UserError
from llmnas.execute.base import output_limits
from llmnas.execute.local import default_workers
from llmnas.propose.base import Action
from llmnas.propose.offline import OfflineProposer, limit_note
from llmnas.results.export import check_eval_onnx, eval_file_lines
from llmnas.run import local_pool, make_chat, make_spec
from llmnas.runs.layout import refuse_overwrite
from llmnas.task.datasets import load_data
from sandbox.cleanup import remove_tree


def evaluate_file(path: Path, cfg: RunConfig, out: Path | None = None, *, force: bool = False) -> dict:
    """Static checks, sandboxed build/train/measure, driver-side scoring; a dict with ok/stage/message.
    Files already in ``out`` under the names an evaluation writes are replaced only with ``force``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"FILE: no such model file: {path}")
    if out and not force:
        refuse_overwrite([Path(out) / name for name in output_limits(cfg.limits)], "eval")
    data = load_data(cfg)
    spec = make_spec(cfg, data)
    checked = checks.check(
        path.read_text(), checks.allowed_imports(cfg.extra_imports), max_bytes=cfg.max_candidate_kb * 1024
    )
    if isinstance(checked, checks.Rejection):
        return {"ok": False, "stage": checked.stage, "message": checked.message, "metrics": {}}
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="llmnas-eval-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        result = _sandboxed(cfg, spec, data, checked.candidate_id, checked.code, folder)
        verdict = judge(result, folder, data, spec, cfg)
        files = {}
        if out:  # the user keeps these files: the sandbox's ONNX only when it checks out
            onnx = check_eval_onnx(folder, data.x_val, data.input_shape)
            files = {"onnx": {"ok": onnx.ok, "note": onnx.note}, "lines": eval_file_lines(folder, path, onnx)}
    finally:
        if not out:
            remove_tree(folder)
    return {
        "ok": verdict.ok,
        "stage": verdict.stage,
        "message": verdict.message,
        "candidate_id": checked.candidate_id,
        **({"folder": str(folder)} if out else {}),
        "device": result.device,
        "metrics": verdict.metrics.model_dump(exclude_none=True),
        **({"files": files} if files else {}),
    }


def _sandboxed(cfg: RunConfig, spec, data, candidate_id: str, code: str, folder: Path):
    """One candidate through a one-slot pool, exactly as a search runs it; its sandbox Result."""
    with local_pool(cfg, 1) as pool:
        data.write_worker_files(pool.data_dir)
        job = make_job(cfg, spec, data, pool, candidate_id, code)
        return pool.submit(job, folder).result()


PROBE_STEPS = 50


def spec_json(cfg: RunConfig) -> dict:
    """`search --dry-run --json`: the spec read from the requirements and resolved against --data (keys in
    docs/usage.md), with the data's name and split sizes."""
    data = load_data(cfg)
    spec = make_spec(cfg, data, make_chat(cfg), announce=lambda _: None)
    splits = {"train": len(data.x_train), "val": len(data.x_val), "test": len(data.x_test)}
    return {**spec.to_json(), "data": {"name": data.name, "samples": splits}}


def dry_run(cfg: RunConfig) -> list[str]:
    """What a search with ``cfg`` would do, without doing it: the spec, the data, the training budget and
    the time per candidate estimated from one probe (a first offline-proposer candidate, trained for
    ``PROBE_STEPS`` steps in the sandbox: per-step time from its training, the rest as overhead)."""
    data = load_data(cfg)
    chat = make_chat(cfg)
    spec = make_spec(cfg, data, chat, announce=lambda _: None)
    steps, workers = cfg.train.max_steps, default_workers(cfg.workers)
    feasible = limit_note(spec, llm=chat is not None)  # an offline search that cannot pass stops here
    lines = [
        *[f"Note: {note}" for note in data.notes],
        "Task spec:",
        "  " + spec.summary().replace("\n", "\n  "),
        *([feasible] if feasible else []),
        f"Data: {data.name}: {len(data.x_train):,} train / {len(data.x_val):,} validation / "
        f"{len(data.x_test):,} test samples, input {data.input_shape} ({data.modality}), "
        + (
            f"{data.num_classes} classes"
            if data.task == "classification"
            else f"regression target (train mean {data.target_mean:.4g}, sd {data.target_std:.4g})"
        ),
        f"Training: {steps:,} steps of batch {cfg.train.batch_size} per candidate; budget {cfg.budget} "
        f"candidates on {workers} workers; proposer: {cfg.llm}",
    ]
    proposal = OfflineProposer(spec.modality, cfg.seed).propose(
        Action("generate"), [], spec, np.random.default_rng(cfg.seed)
    )
    probe_cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"max_steps": min(steps, PROBE_STEPS)})}
    )
    folder = Path(tempfile.mkdtemp(prefix="llmnas-eval-"))
    try:
        started = time.monotonic()  # an estimate for the user: nothing selects on it
        result = _sandboxed(probe_cfg, spec, data, "probe", checks.normalise(proposal.code), folder)
        wall = time.monotonic() - started
    finally:
        remove_tree(folder)
    trained = result.metrics.train_steps if result.metrics else None
    if not result.ok or not trained:
        lines.append(f"Probe: the probe candidate failed ({result.stage}: {result.message}); no estimate")
        return lines
    per_step = result.metrics.train_seconds / trained
    overhead = max(wall - result.metrics.train_seconds, 0.0)
    each = overhead + per_step * steps
    rounds = -(-cfg.budget // workers)
    lines.append(
        f"Estimate (one probe of {trained} steps on this machine, as loaded now): ~{each:.1f} s per candidate "
        f"({per_step * 1000:.1f} ms per step + {overhead:.1f} s outside training; the probe's includes the sandbox's start), "
        f"~{rounds * each / 60:.1f} min for the search's training{'' if cfg.llm == 'offline' else ' plus LLM time'}"
    )
    return lines
