"""Every K evaluations, fine-tune the local model on the run's best traces (finetune/lora.py) and
load the new adapter: an end-of-round listener of the search loop."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from llmnas.finetune.lora import META, finetune_lora, latest_adapter, next_index, select_traces
from llmnas.finetune.traces import collect_traces
from llmnas.llm.chat import LLMError
from llmnas.llm.local import HFChat
from llmnas.runs.events import FinetuneEvent
from llmnas.runs.layout import RunLayout

log = logging.getLogger("llmnas")


@dataclass(frozen=True)
class FinetuneOptions:
    """When and how to fine-tune. ``every`` = K evaluations (0 = never)."""

    every: int = 0
    top_fraction: float = 0.25
    min_reward: float = 0.0
    min_examples: int = 4
    steps: int = 100
    epochs: float | None = 1.0  # at most this many passes over a round's examples (None: ``steps`` always)
    lr: float = 2e-4
    rank: int = 16
    alpha: int = 32
    batch_size: int = 4
    max_length: int = 2048
    reward_weighted: bool = True
    gradient_checkpointing: bool | None = None  # None: on for CUDA, off on CPU
    seed: int = 0


class FineTuner:
    """Trains a new adapter whenever another ``every`` evaluations are done, and reports each round
    through ``on_event`` as a FinetuneEvent for the run log."""

    def __init__(
        self,
        chat: HFChat,
        options: FinetuneOptions,
        *,
        on_event: Callable[[FinetuneEvent], None] | None = None,
    ):
        if options.every < 0:
            raise ValueError("--finetune-every must be >= 0")
        if not hasattr(chat, "tokenizer") or not hasattr(chat, "load_adapter"):
            raise LLMError("--finetune-every needs a local model: use --llm hf:PATH")
        self.chat = chat
        self.options = options
        self.on_event = on_event
        self.trained_at = 0  # evaluations done when the latest adapter was trained
        self.adapter: Path | None = None

    def resume(self, run_dir: Path) -> Path | None:
        """Load the run's latest adapter (if any) into the chat model; call once before proposing."""
        path = latest_adapter(run_dir)
        if path is not None:
            meta = json.loads((path / META).read_text())
            self.trained_at = int(meta.get("evaluations", 0))
            self.chat.load_adapter(str(path))
            self.adapter = path
            log.info("fine-tuning: resumed with %s (trained after %d evaluations)", path, self.trained_at)
        return path

    def due(self, evaluations_done: int) -> bool:
        k = self.options.every
        return k > 0 and evaluations_done // k > self.trained_at // k

    def maybe_finetune(
        self, run_dir: Path, evaluations_done: int, *, before_round: int | None = None
    ) -> Path | None:
        """Train and load a new adapter if another K evaluations are done and enough good traces
        exist (else None: too few traces are tried again on the next call). A failed round is logged
        and reported, the previous adapter stays in use, and the next try waits for another K.
        Call it between rounds (never while proposals are being generated); ``before_round`` keeps
        the traces of a round that is still in flight out of the training set."""
        if not self.due(evaluations_done):
            return None
        o = self.options
        chosen = select_traces(
            collect_traces(run_dir, before_round=before_round), o.top_fraction, o.min_reward
        )
        if len(chosen) < o.min_examples:
            log.info("fine-tuning: %d good traces, need %d; trying again later", len(chosen), o.min_examples)
            return None
        steps = o.steps
        if o.epochs is not None:  # 3 passes over 4 own outputs made a model copy them (bench/RESULTS.md)
            steps = min(steps, max(1, math.ceil(o.epochs * len(chosen) / o.batch_size)))
        index = next_index(RunLayout(run_dir).adapters)
        checkpointing = o.gradient_checkpointing
        if checkpointing is None:
            checkpointing = self.chat.device.startswith("cuda")
        stats: dict = {}
        try:
            path = finetune_lora(
                self.chat,
                chosen,
                RunLayout(run_dir).adapters,
                steps=steps,
                lr=o.lr,
                rank=o.rank,
                alpha=o.alpha,
                batch_size=o.batch_size,
                max_length=o.max_length,
                seed=o.seed + index,
                reward_weighted=o.reward_weighted,
                gradient_checkpointing=checkpointing,
                meta={"evaluations": evaluations_done},
                on_stats=stats.update,
            )
        except Exception as e:  # a failed round must not end the search: keep the previous adapter
            log.warning("fine-tuning failed (%s: %s); keeping the previous adapter", type(e).__name__, e)
            self._restore()
            self.trained_at = evaluations_done  # try again after the next K, not every round
            self._emit({"ok": False, "evaluations": evaluations_done, "error": f"{type(e).__name__}: {e}"})
            return None
        self.trained_at, self.adapter = evaluations_done, path
        stats.pop("candidates", None)
        self._emit(
            {
                "ok": True,
                "evaluations": evaluations_done,
                **stats,
                "adapter": str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path),
                "options": asdict(o),
            }
        )
        log.info(
            "fine-tuned %s on %d traces in %.1fs: loss %.3f -> %.3f",
            path.name,
            stats.get("examples", 0),
            stats.get("seconds", 0.0),
            stats.get("loss_before", float("nan")),
            stats.get("loss_after", float("nan")),
        )
        return path

    def _restore(self) -> None:
        from peft import PeftModel

        if isinstance(self.chat.model, PeftModel):
            self.chat.model = self.chat.model.unload()
        if self.adapter is not None:
            self.chat.load_adapter(str(self.adapter))

    def _emit(self, event: dict) -> None:
        if self.on_event is not None:
            stats = {k: v for k, v in event.items() if k not in FinetuneEvent.model_fields}
            known = {k: v for k, v in event.items() if k in FinetuneEvent.model_fields}
            self.on_event(FinetuneEvent(**known, stats=stats))

    def __call__(self, search) -> None:
        """End-of-round listener: fine-tune once another K evaluations are done (not after the last round)."""
        if not search.finished:
            self.maybe_finetune(search.store.folder, search.proposed, before_round=search.round)
