"""Evaluate one hand-written model file through exactly the path a search uses."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llmnas.candidate import checks
from llmnas.config import RunConfig
from llmnas.engine.evaluation import judge, make_job
from llmnas.errors import UserError
from llmnas.execute.local import LocalPool
from llmnas.run import load_data, make_spec
from llmnas.runs.export import check_eval_onnx, eval_file_lines
from sandbox.cleanup import remove_tree


def evaluate_file(path: Path, cfg: RunConfig, out: Path | None = None) -> dict:
    """Static checks, sandboxed build/train/measure, driver-side scoring; a dict with ok/stage/message."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"FILE: no such model file: {path}")
    data = load_data(cfg)
    spec = make_spec(cfg, data)
    checked = checks.check(path.read_text(), checks.allowed_imports(cfg.extra_imports))
    if isinstance(checked, checks.Rejection):
        return {"ok": False, "stage": checked.stage, "message": checked.message, "metrics": {}}
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="llmnas-eval-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with LocalPool(1, cfg.limits, preload=cfg.extra_imports) as pool:
            data.write_worker_files(pool.data_dir)
            job = make_job(cfg, spec, data, pool.data_dir, checked.candidate_id, checked.code)
            result = pool.submit(job, folder).result()
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
