"""Evaluate one hand-written model file through exactly the path a search uses."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llmnas import validate
from llmnas.config import RunConfig
from llmnas.executor import LocalPool
from llmnas.loop import judge, make_job
from llmnas.run import load_data, make_spec


def evaluate_file(path: Path, cfg: RunConfig, out: Path | None = None) -> dict:
    """Static checks, sandboxed build/train/measure, driver-side scoring; a dict with ok/stage/message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FILE: no such model file: {path}")
    data = load_data(cfg)
    spec = make_spec(cfg, data)
    checked = validate.check(
        path.read_text(), validate.DEFAULT_ALLOWED_IMPORTS | frozenset(cfg.extra_imports)
    )
    if isinstance(checked, validate.Rejection):
        return {"ok": False, "stage": checked.stage, "message": checked.message, "metrics": {}}
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="llmnas-eval-"))
    with LocalPool(1, cfg.limits, preload=cfg.extra_imports) as pool:
        data.write_worker_files(pool.data_dir)
        job = make_job(cfg, spec, data, pool.data_dir, checked.candidate_id, checked.code)
        result = pool.submit(job, folder).result()
    ok, stage, message, metrics = judge(result, folder, data, spec, cfg)
    return {
        "ok": ok,
        "stage": stage,
        "message": message,
        "candidate_id": checked.candidate_id,
        "folder": str(folder),
        "device": result.device,
        "metrics": metrics,
    }
