"""The evaluation pipeline: sandbox jobs for checked candidates, optional pre-screening, and the
driver-side verdict (scored predictions, checked size, hard limits, reward) logged the moment it is known.

The loop hands over the round's candidates and gets one EvaluationEvent per candidate back; it never
sees a sandbox result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from pydantic import ValidationError

from llmnas.config import RunConfig
from llmnas.engine.reward import failure_reward, reward, violations
from llmnas.engine.scoring import ScoringError, score
from llmnas.execute.base import Executor
from llmnas.runs.events import EvaluationEvent, Metrics
from llmnas.runs.store import RunStore
from llmnas.task.datasets import Dataset
from llmnas.task.spec import TaskSpec
from sandbox.protocol import Job, Result, Stage


def make_job(
    cfg: RunConfig,
    spec: TaskSpec,
    data: Dataset,
    executor: Executor,
    cid: str,
    code: str,
    *,
    screen: bool = False,
) -> Job:
    """The sandbox job for one candidate on ``executor`` (its data folder and device): the spec's hard
    limits travel with it; ``screen`` stops after the pre-screening proxy."""
    return Job(
        proxies=(cfg.prescreen,) if cfg.prescreen else (),
        screen_only=screen,
        save_weights=not screen,
        candidate_id=cid,
        code=code,
        data_dir=str(executor.data_dir),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=cfg.seed,
        train=cfg.train,
        max_params=spec.max_params,
        max_flops=spec.max_flops,
        max_latency_ms=spec.max_latency_ms,
        threads=cfg.threads,
        device=executor.device,
    )


def failed(round_: int, cid: str, stage: Stage | str, message: str, metrics: dict | None = None, **extra):
    """The event of a candidate that failed at ``stage``, with that stage's reward."""
    return EvaluationEvent(
        round=round_,
        candidate_id=cid,
        ok=False,
        stage=Stage(stage),
        message=message,
        metrics=Metrics.model_validate(metrics or {}),
        reward=failure_reward(str(stage)),
        **extra,
    )


def judge(result: Result, folder: Path, data: Dataset, spec: TaskSpec, cfg: RunConfig, round_: int = 0):
    """Driver-side verdict on a sandbox result: scored predictions, checked size, hard limits, reward, and
    energy/CO2 estimated from the evaluation's wall time and the configured power and grid intensity."""
    cid = result.candidate_id
    extra = {
        "device": result.device,
        "wall_seconds": result.wall_seconds,
        "node": result.node,
        "retries": result.retries,
    }
    if not result.ok:
        return failed(round_, cid, result.stage or Stage.crash, result.message, **extra)
    values = result.metrics.model_dump()
    values["energy_kwh"] = result.wall_seconds * cfg.power_watts / 3.6e6
    values["co2_g"] = values["energy_kwh"] * cfg.carbon_g_per_kwh
    try:
        values |= score(folder, data.y_val, data.y_test, data.num_classes, values["params"])
        metrics = Metrics.model_validate(values)
    except ScoringError as exc:
        return failed(round_, cid, Stage.crash, str(exc), **extra)
    except ValidationError as exc:
        return failed(round_, cid, Stage.crash, f"metric out of range: {exc.errors()[0]['msg']}", **extra)
    if over := violations(metrics.numbers(), spec):
        return failed(round_, cid, Stage.budget, "; ".join(over), metrics.model_dump(), **extra)
    return EvaluationEvent(
        round=round_,
        candidate_id=cid,
        ok=True,
        message=result.message,
        metrics=metrics,
        reward=reward(metrics.numbers(), spec),
        **extra,
    )


class Evaluator:
    """Evaluates a round's candidates through an executor; evaluations already in the log (a resumed
    round) are taken from there instead of being run again."""

    def __init__(
        self,
        cfg: RunConfig,
        spec: TaskSpec,
        data: Dataset,
        executor: Executor,
        store: RunStore,
        done: dict[str, EvaluationEvent],
        wait: Callable[[Iterable[Future]], Iterator[Future]],
    ):
        self.cfg, self.spec, self.data = cfg, spec, data
        self.executor, self.store, self.done, self.wait = executor, store, done, wait

    def evaluate(self, round_: int, candidates: dict[int, tuple[str, str]]) -> dict[int, EvaluationEvent]:
        """``candidates`` maps a slot to (candidate id, code); returns each slot's evaluation."""
        todo = dict(candidates)
        if self.cfg.prescreen:
            self._prescreen(round_, todo)
        futures = {self._submit(cid, code): i for i, (cid, code) in todo.items() if cid not in self.done}
        for fut in self.wait(futures):
            cid = todo[futures[fut]][0]
            if fut.exception() is not None:
                self.store.check_present()  # a deleted run folder says so, anything else is a bug
                raise fut.exception()
            self._record(
                judge(fut.result(), self.store.candidate_dir(cid), self.data, self.spec, self.cfg, round_)
            )
        return {i: self.done[cid] for i, (cid, _) in candidates.items()}

    def _submit(self, cid: str, code: str, screen: bool = False) -> Future[Result]:
        job = make_job(self.cfg, self.spec, self.data, self.executor, cid, code, screen=screen)
        return self.executor.submit(job, self.store.candidate_dir(cid))

    def _record(self, event: EvaluationEvent) -> None:
        self.store.append(event)
        self.done[event.candidate_id] = event

    def _prescreen(self, round_: int, todo: dict[int, tuple[str, str]]) -> None:
        """Zero-cost proxy first: only the round's top ``prescreen_keep`` fraction goes on to training;
        the rest are final, at stage "proxy" (and leave ``todo``). Scores of candidates done before a
        resume come from the log."""
        name = self.cfg.prescreen
        futures = {
            i: self._submit(cid, code, screen=True) for i, (cid, code) in todo.items() if cid not in self.done
        }
        scores: dict[int, float] = {}
        for i, (cid, _) in list(todo.items()):
            if i in futures:
                result = next(iter(self.wait([futures[i]]))).result()
                over = violations(result.metrics.model_dump(), self.spec) if result.ok else []
                if not result.ok or over:
                    stage, message = (
                        (Stage.budget, "; ".join(over)) if result.ok else (result.stage, result.message)
                    )
                    self._record(failed(round_, cid, stage or Stage.crash, message))
                    del todo[i]
                    continue
                value = result.metrics.proxies.get(name)
            else:
                value = self.done[cid].metrics.proxies.get(name)
            scores[i] = value if value is not None and math.isfinite(value) else -math.inf
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        keep = max(1, math.ceil(self.cfg.prescreen_keep * len(ranked))) if ranked else 0
        cut = scores[ranked[keep - 1]] if keep else math.inf
        for i in ranked[keep:]:
            cid = todo.pop(i)[0]
            if cid not in self.done:
                value = scores[i] if math.isfinite(scores[i]) else None
                message = f"screened out: {name} {scores[i]:.4g} below the round's cut {cut:.4g}"
                self._record(failed(round_, cid, Stage.proxy, message, {"proxies": {name: value}}))
