"""Wall time (and so energy) comes from the supervisor outside the cell, never from the worker's report."""

from __future__ import annotations

import hashlib
import json

from llmnas.execute.base import verdict
from sandbox.protocol import ONNX_FILE, PRED_FILES, RESULT_FILE, WEIGHTS_FILE, Job, Metrics, Result


def test_the_supervisors_wall_time_replaces_the_workers_claim(tmp_path):
    job = Job(candidate_id="c1", code="", data_dir=str(tmp_path), input_shape=(4,), num_classes=3, seed=0)
    digest = hashlib.sha256(b"x").hexdigest()
    forged = Result(  # a rebound clock inside the cell
        candidate_id="c1",
        ok=True,
        wall_seconds=1e300,
        metrics=Metrics(params=1, flops=0),
        artifact_sha256=digest,
        weights_sha256=digest,
    )
    (tmp_path / RESULT_FILE).write_text(forged.model_dump_json())
    for name in (*PRED_FILES.values(), WEIGHTS_FILE, ONNX_FILE):
        (tmp_path / name).write_bytes(b"x")
    result = verdict(job, tmp_path, lambda: None, wall=2.5)
    assert result.ok and result.wall_seconds == 2.5
    assert json.loads((tmp_path / RESULT_FILE).read_text())["wall_seconds"] == 2.5  # what the driver reads
