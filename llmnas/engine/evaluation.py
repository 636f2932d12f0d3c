"""The evaluation pipeline: sandbox jobs for checked candidates, optional pre-screening (a zero-cost
proxy or the learned predictor, engine/predictor.py), and the driver-side verdict (scored predictions,
checked size, hard limits, reward, energy and CO2) logged the moment it is known, stamped with the
run's clock.

The loop hands over the round's candidates and gets one EvaluationEvent per candidate back; it never
sees a sandbox result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from pydantic import ValidationError

from llmnas.config import RunConfig
from llmnas.engine import predictor
from llmnas.engine.carbon import Clock, Grid, SystemClock
from llmnas.engine.reward import reward, violations
from llmnas.engine.scoring import ScoringError, score
from llmnas.execute.base import Executor
from llmnas.metrics import failure_reward, quality
from llmnas.runs.events import EvaluationEvent, Metrics, now
from llmnas.runs.store import RunStore
from llmnas.task.datasets import Dataset
from llmnas.task.spec import TaskSpec
from sandbox.protocol import Job, Result, Stage

log = logging.getLogger("llmnas")


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
    proxies = predictor.PROXIES if cfg.prescreen == "predictor" else (cfg.prescreen,) if cfg.prescreen else ()
    return Job(
        proxies=proxies,
        screen_only=screen,
        candidate_id=cid,
        code=code,
        data_dir=str(executor.data_dir),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        task=data.task,
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
        reward=failure_reward(stage),
        **extra,
    )


def judge(
    result: Result,
    folder: Path,
    data: Dataset,
    spec: TaskSpec,
    cfg: RunConfig,
    round_: int = 0,
    *,
    intensity: float | None = None,
    extra_metrics: dict | None = None,
):
    """Driver-side verdict on a sandbox result: scored predictions, checked size, hard limits, reward, and
    the energy estimate, energy_kwh = wall_seconds x power_watts (the evaluation's wall time in its worker
    times the configured draw per worker), charged ``intensity`` gCO2/kWh (default: the configured
    constant) into co2_g. ``extra_metrics`` (the pre-screen's prediction) join the metrics."""
    cid = result.candidate_id
    extra = {
        "device": result.device,
        "wall_seconds": result.wall_seconds,
        "node": result.node,
        "retries": result.retries,
    }
    if not result.ok:
        return failed(round_, cid, result.stage or Stage.crash, result.message, **extra)
    values = result.metrics.model_dump() | (extra_metrics or {})
    values["carbon_g_per_kwh"] = cfg.carbon_g_per_kwh if intensity is None else intensity
    values["energy_kwh"] = result.wall_seconds * cfg.power_watts / 3.6e6
    values["co2_g"] = values["energy_kwh"] * values["carbon_g_per_kwh"]
    try:
        values |= score(folder, data)
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
        artifact_sha256=result.artifact_sha256,
        **extra,
    )


class Evaluator:
    """Evaluates a round's candidates through an executor; evaluations already in the log (a resumed
    round) are taken from there instead of being run again. Each event is stamped with ``clock``'s time
    and charged ``grid``'s mean intensity over the evaluation's wall time."""

    def __init__(
        self,
        cfg: RunConfig,
        spec: TaskSpec,
        data: Dataset,
        executor: Executor,
        store: RunStore,
        done: dict[str, EvaluationEvent],
        wait: Callable[[Iterable[Future]], Iterator[Future]],
        *,
        clock: Clock | None = None,
        grid: Grid | None = None,
    ):
        self.cfg, self.spec, self.data = cfg, spec, data
        self.executor, self.store, self.done, self.wait = executor, store, done, wait
        self.clock = clock or SystemClock()
        self.grid = grid or Grid.constant(cfg.carbon_g_per_kwh)
        self.predictor = predictor.AccuracyPredictor(cfg.seed)

    def evaluate(self, round_: int, candidates: dict[int, tuple[str, str]]) -> dict[int, EvaluationEvent]:
        """``candidates`` maps a slot to (candidate id, code); returns each slot's evaluation."""
        todo = dict(candidates)
        predicted = self._prescreen(round_, todo) if self.cfg.prescreen else {}
        futures = {self._submit(cid, code): i for i, (cid, code) in todo.items() if cid not in self.done}
        for fut in self.wait(futures):
            cid = todo[futures[fut]][0]
            if fut.exception() is not None:
                self.store.check_present()  # a deleted run folder says so, anything else is a bug
                raise fut.exception()
            result, end = fut.result(), self.clock.now()
            self._record(
                judge(
                    result,
                    self.store.candidate_dir(cid),
                    self.data,
                    self.spec,
                    self.cfg,
                    round_,
                    intensity=self.grid.mean(end - result.wall_seconds, end),
                    extra_metrics=predicted.get(cid),
                )
            )
        return {i: self.done[cid] for i, (cid, _) in candidates.items()}

    def _submit(self, cid: str, code: str, screen: bool = False) -> Future[Result]:
        job = make_job(self.cfg, self.spec, self.data, self.executor, cid, code, screen=screen)
        return self.executor.submit(job, self.store.candidate_dir(cid))

    def _record(self, event: EvaluationEvent) -> None:
        event = event.model_copy(update={"time": now(self.clock.now())})
        self.store.append(event)
        self.done[event.candidate_id] = event

    def _prescreen(self, round_: int, todo: dict[int, tuple[str, str]]) -> dict[str, dict]:
        """Screen first (build, limits, proxies): only the round's top ``prescreen_keep`` fraction by the
        rule (``_scores``) goes on to training; the rest are final, at stage "proxy" (and leave ``todo``).
        Screens of candidates done before a resume come from the log; one the log holds no proxies for
        (it failed its screen, or failed in training) is screened again, so that the round ranks the same
        candidates on the same scores as before. Returns the predicted accuracy of each candidate kept, to
        be logged with its evaluation."""
        futures = {
            i: self._submit(cid, code, screen=True)
            for i, (cid, code) in todo.items()
            if cid not in self.done or not self.done[cid].metrics.proxies
        }
        screens: dict[int, dict] = {}
        for i, (cid, _) in list(todo.items()):
            if i not in futures:
                screens[i] = self.done[cid].metrics.model_dump()
                continue
            result = next(iter(self.wait([futures[i]]))).result()
            over = violations(result.metrics.model_dump(), self.spec) if result.ok else []
            if not result.ok or over:
                stage, message = (
                    (Stage.budget, "; ".join(over)) if result.ok else (result.stage, result.message)
                )
                if cid not in self.done:
                    self._record(failed(round_, cid, stage or Stage.crash, message))
                del todo[i]
                continue
            screens[i] = {k: getattr(result.metrics, k) for k in ("params", "flops", "depth", "proxies")}
        rule, scores, note = self._scores(round_, screens)
        ranked = sorted(scores, key=lambda i: (*(-v for v in scores[i]), i))
        keep = max(1, math.ceil(self.cfg.prescreen_keep * len(ranked))) if ranked else 0
        cut = scores[ranked[keep - 1]][0] if keep else math.inf
        predicted = self.predictor.fitted and self.cfg.prescreen == "predictor"
        for i in ranked[keep:]:
            cid = todo.pop(i)[0]
            if cid not in self.done:
                metrics = screens[i] | ({"predicted_acc": scores[i][0]} if predicted else {})
                message = f"screened out: {rule} {scores[i][0]:.4g} below the round's cut {cut:.4g}{note}"
                self._record(failed(round_, cid, Stage.proxy, message, metrics))
        return {todo[i][0]: {"predicted_acc": scores[i][0]} for i in ranked[:keep] if predicted}

    def _scores(self, round_: int, screens: dict[int, dict]) -> tuple[str, dict[int, tuple], str]:
        """The rule's name, each slot's score (a tuple: higher is better, later entries break ties), and a
        note for the screened-out. The predictor is refitted on every trained evaluation of earlier rounds
        (sorted, so a resumed round fits on the same data); until it has enough, FALLBACK ranks."""
        name = self.cfg.prescreen
        if name != "predictor":
            return name, {i: (_finite(m["proxies"].get(name)),) for i, m in screens.items()}, ""
        dumped = [(e, e.metrics.model_dump()) for e in self.done.values() if e.round < round_]
        examples = sorted(
            (e.round, e.candidate_id, m, score) for e, m in dumped if (score := quality(m)) is not None
        )
        fallback = {i: predictor.fallback_score(m) for i, m in screens.items()}
        if not self.predictor.fit([(m, acc) for *_, m, acc in examples]):
            note = (
                f" (predictor not fitted yet: {len(examples)} of {self.predictor.min_evaluations} "
                f"trained evaluations; ranked by {predictor.FALLBACK})"
            )
            log.info("pre-screen round %d%s", round_, note)
            return predictor.FALLBACK, {i: (v,) for i, v in fallback.items()}, note
        slots = list(screens)
        guesses = self.predictor.predict([screens[i] for i in slots])
        return "predicted accuracy", {i: (g, fallback[i]) for i, g in zip(slots, guesses, strict=True)}, ""


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf
