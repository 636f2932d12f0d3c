"""Start and resume runs: the wiring between config, data, spec, proposer, executor and store."""

from __future__ import annotations

import logging
import platform
import re
import sys
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

from llmnas.candidate import checks
from llmnas.config import RunConfig, deadline_at, duration_seconds, resolve_device
from llmnas.engine.carbon import CarbonPacer, Clock, Grid, SystemClock
from llmnas.engine.final import final_train, small_validation_note
from llmnas.engine.interrupt import TimeLimit
from llmnas.engine.loop import Search, SearchResult
from llmnas.errors import RunFailed, UserError
from llmnas.execute.base import Executor
from llmnas.execute.layers import containment
from llmnas.execute.local import LocalPool
from llmnas.llm.backends import parse_llm
from llmnas.llm.chat import ChatModel, completion_mode
from llmnas.llm.replay import ReplayChat
from llmnas.llm.spec_reader import spec_from_llm
from llmnas.llm.usage import UsageMeter, cost_rates
from llmnas.propose.base import Proposer
from llmnas.propose.llm import LLMProposer
from llmnas.propose.offline import (
    LOCAL_OPERATORS,
    OFFLINE_OPERATORS,
    OfflineProposer,
    RandomProposer,
    limit_note,
)
from llmnas.results.export import BestExport
from llmnas.results.read import load_run, ranked
from llmnas.runs.events import LLMCallEvent, LLMReplyEvent, RefineEvent, SandboxEvent
from llmnas.runs.store import RunStore
from llmnas.runs.view import RunView
from llmnas.task.datasets import Dataset, load_data
from llmnas.task.requirements import REFINED, parse_requirements
from llmnas.task.spec import TaskSpec

log = logging.getLogger("llmnas")


def make_chat(cfg: RunConfig, api_key: str | None = None) -> ChatModel | None:
    """The configured language model, or None for the offline proposer (checks --llm, and that a cost
    budget can be counted, early)."""
    cost_rates(cfg.llm.strip(), cfg.price_in, cfg.price_out, cfg.max_cost_usd)
    return parse_llm(
        cfg.llm,
        api_key=api_key,
        timeout_s=cfg.llm_timeout_s,
        max_retries=cfg.llm_retries,
        concurrency=cfg.llm_concurrency,
        mode=cfg.llm_mode,
        device=cfg.device,
    )


def make_spec(cfg: RunConfig, data: Dataset, chat: ChatModel | None = None, announce=print) -> TaskSpec:
    """The model's reading of the requirements when there is one (cross-checked by the rule parser),
    else the rule parser's; resolved against the data."""
    if chat is None or completion_mode(chat):  # a base model does not answer the JSON prompt
        spec = parse_requirements(cfg.requirements)
    else:
        spec, warnings = spec_from_llm(cfg.requirements, chat)
        for line in warnings:
            announce(f"spec: {line}")
    if cfg.tolerance is not None:
        spec = spec.model_copy(update={"tolerance": cfg.tolerance})
    return spec.resolve(
        input_shape=data.input_shape, num_classes=data.num_classes, modality=data.modality, task=data.task
    )


def make_proposer(
    cfg: RunConfig, spec: TaskSpec, store: RunStore, chat: ChatModel | None, view: RunView
) -> Proposer:
    """The proposer. With a model, the usage logged in ``view`` counts against the budgets and the
    replies recorded there are served again (exact resume)."""
    if chat is None:
        if cfg.strategy == "random":
            return RandomProposer(spec.modality, cfg.seed)
        operators = LOCAL_OPERATORS if cfg.strategy == "local" else OFFLINE_OPERATORS
        return OfflineProposer(spec.modality, cfg.seed, operators=operators)
    meter = UsageMeter(
        chat,
        max_tokens=cfg.max_tokens,
        max_cost_usd=cfg.max_cost_usd,
        price_per_m=cost_rates(chat.name, cfg.price_in, cfg.price_out, cfg.max_cost_usd),
        usage=view.usage,
        on_call=lambda record: store.append(LLMCallEvent(**record)),
    )
    replay = ReplayChat(
        meter, view.replies, lambda key, texts: store.append(LLMReplyEvent(key=key, texts=texts))
    )
    return LLMProposer(
        replay,
        checks.allowed_imports(cfg.extra_imports),
        max_tokens=cfg.llm_max_tokens,
        max_candidate_bytes=cfg.max_candidate_kb * 1024,
    )


def make_executor(cfg: RunConfig) -> Executor:
    """The local pool, or Ray (the cluster's room, capped by --workers; one GPU per worker on cuda)."""
    if cfg.executor == "ray":
        from llmnas.execute.ray import RayExecutor

        return RayExecutor(
            cfg.workers,
            cfg.limits,
            address=cfg.ray_address,
            device=cfg.device,
            gpus_per_task=cfg.gpus_per_task,
            preload=cfg.extra_imports,
        )
    return local_pool(cfg)


def local_pool(cfg: RunConfig, workers: int | None = None) -> LocalPool:
    """Sandboxed workers on this machine; on cuda (``--device cuda``, or auto with a GPU here) they are
    spread over the GPUs visible here, one per worker."""
    import torch

    count = torch.cuda.device_count()
    gpus = count if resolve_device(cfg.device, count > 0) == "cuda" else 0
    return LocalPool(workers or cfg.workers, cfg.limits, preload=cfg.extra_imports, gpus=gpus)


def default_run_dir(cfg: RunConfig, root: Path = Path("results")) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", Path(cfg.data).stem.lower()).strip("-") or "data"
    return root / f"{datetime.now():%Y%m%d-%H%M%S}-{slug}-s{cfg.seed}"


def _versions() -> dict:
    import torch

    from llmnas.version import VERSION

    return {
        "llmnas": VERSION,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def start(
    cfg: RunConfig,
    out: Path | None = None,
    *,
    api_key: str | None = None,
    progress: bool = True,
    announce=print,
    clock: Clock | None = None,
) -> SearchResult:
    """A new run: check the model and the data, parse the spec, create the run folder, search. ``clock``
    (default: the system's) is what carbon pacing and event times read; tests simulate one."""
    chat = make_chat(cfg, api_key)
    if cfg.carbon_forecast is not None:
        Grid.from_csv(cfg.carbon_forecast)  # a bad forecast is an error before the run folder exists
    data = load_data(cfg)
    for note in data.notes:
        announce(f"Note: {note}")
    spec = make_spec(cfg, data, chat, announce)
    announce("Task spec:\n  " + spec.summary().replace("\n", "\n  "))
    if note := limit_note(spec, llm=chat is not None):
        announce(note)
    if note := small_validation_note(len(data.y_val), spec.task):
        announce(note)
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
    return _search(cfg, spec, data, store, chat, progress, clock=clock)


def resume(
    folder: Path,
    *,
    budget: int | None = None,
    api_key: str | None = None,
    progress: bool = True,
    announce=print,
    clock: Clock | None = None,
) -> SearchResult:
    """Continue a run from its folder: the last checkpoint plus the evaluations logged after it."""
    store = RunStore.open(folder)
    record = store.record
    cfg = RunConfig.model_validate(record.config)
    if budget is not None:
        cfg = cfg.model_copy(update={"budget": budget})
        store.update_run_info(config=cfg.model_dump(mode="json"))
    spec = TaskSpec.model_validate(store.view().spec(record.spec))  # the spec in force, as show reads it
    announce(f"Resuming {folder}")
    return _search(cfg, spec, load_data(cfg), store, make_chat(cfg, api_key), progress, clock=clock)


def refine(
    folder: Path,
    text: str,
    *,
    budget: int | None = None,
    interactive: bool = False,
    api_key: str | None = None,
    progress: bool = True,
    announce=print,
    ask=input,
) -> SearchResult:
    """New instructions for a run: requirements grow, the spec is re-derived (new limits apply to the
    archive at once), the archive and the policy carry over, and the search goes on for ``budget`` more
    candidates (default: the run's original budget). ``interactive`` asks for feedback after each round."""
    store = RunStore.open(folder)
    cfg = RunConfig.model_validate(store.record.config)
    data, chat = load_data(cfg), make_chat(cfg, api_key)
    cfg, spec = _refine_spec(store, cfg, data, chat, text, announce)
    saved = store.load_state()
    done = saved[0].proposed if saved else 0
    cfg = cfg.model_copy(update={"budget": done + (budget or cfg.budget)})
    store.update_run_info(config=cfg.model_dump(mode="json"))

    def between_rounds(search: Search) -> bool:
        nonlocal cfg
        if search.finished:
            return True
        try:
            line = ask("\nFeedback for the next round (Enter: continue, q: stop): ").strip()
        except EOFError:
            return False
        if line.lower() in ("q", "quit", "stop", "exit"):
            return False
        if line:
            cfg, new_spec = _refine_spec(store, cfg, data, chat, line, announce)
            search.apply_spec(new_spec)
        return True

    return _search(cfg, spec, data, store, chat, progress, between_rounds if interactive else None)


def _refine_spec(
    store: RunStore, cfg: RunConfig, data: Dataset, chat: ChatModel | None, text: str, announce
) -> tuple[RunConfig, TaskSpec]:
    """Append the words, re-derive the spec from all the words so far, and log it."""
    if not text.strip():
        raise UserError("refine: the new instructions are empty")
    cfg = cfg.model_copy(update={"requirements": f"{cfg.requirements.rstrip()}{REFINED}{text.strip()}"})
    spec = _fill_priority_targets(make_spec(cfg, data, chat, announce), store.folder)
    # before anything is written: a refinement asking for the impossible is refused
    if note := limit_note(spec, llm=chat is not None):
        announce(note)
    store.append_requirements(text)
    store.append(RefineEvent(text=text, spec=spec.model_dump(mode="json")))  # first: the log decides
    store.update_run_info(config=cfg.model_dump(mode="json"), spec=spec.model_dump(mode="json"))
    announce("Refined spec:\n  " + spec.summary().replace("\n", "\n  "))
    return cfg, spec


def _fill_priority_targets(spec: TaskSpec, folder: Path) -> TaskSpec:
    """ "Latency (size) matters more" with no number: the reward aims at half the latency (size) of the
    model the new spec chooses now."""
    board = ranked(load_run(folder), spec)[0]
    if not board:
        return spec
    chosen, first = board[0], spec.order()[0]
    if first == "latency" and spec.target_latency_ms is None and chosen.metric("latency_ms"):
        spec = spec.model_copy(update={"target_latency_ms": chosen.metric("latency_ms") / 2})
    if first == "size" and spec.target_params is None and chosen.metric("params"):
        spec = spec.model_copy(update={"target_params": max(1, int(chosen.metric("params")) // 2)})
    return spec


def _search(
    cfg: RunConfig,
    spec: TaskSpec,
    data: Dataset,
    store: RunStore,
    chat: ChatModel | None,
    progress: bool,
    between_rounds=None,
    clock: Clock | None = None,
) -> SearchResult:
    clock = clock or SystemClock()
    grid, pacer = _carbon(cfg, clock)
    view = store.view()  # the log, read once for the proposer and the search
    proposer = make_proposer(cfg, spec, store, chat, view)
    tuner = _finetuner(cfg, chat, store)
    listeners = [*([tuner] if tuner else []), *([between_rounds] if between_rounds else []), BestExport()]
    if cfg.time_limit:
        listeners.append(TimeLimit(duration_seconds(cfg.time_limit), cfg.time_limit))
    failed = False
    try:
        with make_executor(cfg) as pool:
            data.write_worker_files(pool.data_dir)
            store.append(SandboxEvent(layers=containment()))
            search = Search(
                cfg,
                spec,
                data,
                proposer,
                pool,
                store,
                progress=progress,
                listeners=listeners,
                clock=clock,
                grid=grid,
                pacer=pacer,
                view=view,
            )
            if tuner is not None:
                tuner(search)  # catches up after a kill
            result = _with_usage(search.run(cfg.budget), store, chat)
        if cfg.final_train and result.best is not None:
            with make_executor(cfg.model_copy(update={"workers": 1})) as pool:
                final = final_train(pool, cfg, spec, data, store, result.best.candidate_id)
            result = replace(result, final=final)
        return result
    except KeyboardInterrupt:
        print(
            f"\nStopped. Finished evaluations are saved in {store.folder}.\n"
            f"Resume with: llmnas resume {store.folder}",
            file=sys.stderr,
        )
        raise
    except RunFailed:
        failed = True  # one line says why; a report now would only add noise
        raise
    finally:
        store.close()
        if not failed:
            _write_report(store.folder)


def _carbon(cfg: RunConfig, clock: Clock) -> tuple[Grid, CarbonPacer | None]:
    """The grid's intensity (the forecast, else the constant) and, with a forecast, the round pacer."""
    if cfg.carbon_forecast is None:
        return Grid.constant(cfg.carbon_g_per_kwh), None
    grid = Grid.from_csv(cfg.carbon_forecast)
    return grid, CarbonPacer(grid, deadline_at(cfg.deadline, clock.now()), clock)


def _with_usage(result: SearchResult, store: RunStore, chat: ChatModel | None) -> SearchResult:
    if chat is not None:
        result.stats["llm"] = asdict(store.view().usage)
    return result


def _finetuner(cfg: RunConfig, chat: ChatModel | None, store: RunStore):
    """With --finetune-every K and a local model: LoRA on the best traces every K proposals; on resume the
    latest adapter is loaded back."""
    if not cfg.finetune_every:
        return None
    from llmnas.finetune.tuner import FinetuneOptions, FineTuner

    options = FinetuneOptions(
        every=cfg.finetune_every,
        steps=cfg.finetune_steps,
        epochs=cfg.finetune_epochs,
        top_fraction=cfg.finetune_top_fraction,
        rank=cfg.finetune_rank,
        alpha=2 * cfg.finetune_rank,
        seed=cfg.seed,
    )
    tuner = FineTuner(chat, options, on_event=store.append)
    tuner.resume(store.folder)
    return tuner


def _write_report(folder: Path) -> None:
    """The report and plots every run folder promises; a failure here never hides the search's result."""
    from llmnas.report.html import render_report

    try:
        render_report(folder)
    except Exception as exc:  # noqa: BLE001
        log.warning("report not written (%s); run `llmnas report %s`", exc, folder)
