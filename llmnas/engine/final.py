"""Small validation sets: the rule that ranks on them, said at the start; and `--final-train`: once the
search has chosen, the chosen model is trained again on training + validation data and its test score
is reported once (final/<id>/, a "final" event).

Validation labels reach a worker only here, in an executor of its own started after the search has
ended: nothing it learns can steer a choice already made. Its validation scores are of data it trained
on and are dropped; the test scores are the point.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from llmnas.config import RunConfig
from llmnas.engine.evaluation import judge, make_job
from llmnas.execute.base import Executor
from llmnas.runs.events import FinalEvent, Metrics
from llmnas.runs.layout import CODE
from llmnas.runs.store import RunStore
from llmnas.task.datasets import Dataset
from llmnas.task.spec import TaskSpec

SMALL_VALIDATION = 100  # below this many validation samples, the run says how it breaks ties


def small_validation_note(n: int, task: str) -> str | None:
    """The ranking rule on a small validation set, said once at the start (None for a large one)."""
    if n >= SMALL_VALIDATION:
        return None
    step = (
        f"accuracy moves in steps of {1 / n:.3f}, so many candidates tie; "
        if task == "classification"
        else ""
    )
    return (
        f"Note: the validation set has {n} samples (< {SMALL_VALIDATION}): {step}ties are ranked by "
        "validation loss, then fewer parameters. --final-train retrains the choice on train + validation; "
        "--val-fraction enlarges the validation set."
    )


def train_and_validation(data: Dataset) -> Dataset:
    """``data`` with the validation split appended to the training split (the preprocessing stays the
    one fitted on the training split)."""
    return replace(
        data,
        x_train=np.concatenate([data.x_train, data.x_val]),
        y_train=np.concatenate([data.y_train, data.y_val]),
    )


def final_train(
    executor: Executor, cfg: RunConfig, spec: TaskSpec, data: Dataset, store: RunStore, candidate_id: str
) -> FinalEvent:
    """Train ``candidate_id``'s code on train + validation in ``executor`` (fresh, started for this),
    score the test split on the driver, log and return the "final" event."""
    merged = train_and_validation(data)
    merged.write_worker_files(executor.data_dir)
    code = (store.paths.candidate(candidate_id) / CODE).read_text()
    out = store.paths.final / candidate_id
    job = make_job(cfg, spec, merged, executor, candidate_id, code)
    verdict = judge(executor.submit(job, out).result(), out, merged, spec, cfg)
    kept = {k: v for k, v in verdict.metrics.model_dump().items() if not k.startswith("val_")}
    event = FinalEvent(
        candidate_id=candidate_id,
        ok=verdict.ok,
        stage=verdict.stage,
        message=verdict.message,
        train_samples=len(merged.y_train),
        metrics=Metrics.model_validate(kept),
    )
    store.append(event)
    return event
