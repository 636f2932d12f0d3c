"""Usage metering: tokens and cost per call, and budgets that end a run cleanly."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from llmnas.errors import UserError
from llmnas.llm.chat import BudgetExhausted, ChatModel, Completion, EndpointDown, LLMError, Messages

# US dollars per 1M input / output tokens, for cost estimates and --max-cost. A name matches its entry
# exactly or as a dated snapshot (gpt-4o-2024-08-06), never as a prefix: gpt-5-pro is not gpt-5.
PRICES_PER_M: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
}
_SNAPSHOT = re.compile(r"(.+?)(-\d{4}-\d{2}-\d{2})?")


def known_price(name: str) -> tuple[float, float] | None:
    """$ per 1M (input, output) tokens of a model by its ``--llm`` name: the table's for an
    ``openai:MODEL``, nothing for a local ``hf:`` model, None when unknown (any other name)."""
    if name.startswith("hf:"):
        return (0.0, 0.0)
    if not name.startswith("openai:"):
        return None
    return PRICES_PER_M.get(_SNAPSHOT.fullmatch(name[len("openai:") :]).group(1))


def cost_rates(
    name: str, price_in: float | None, price_out: float | None, max_cost_usd: float | None
) -> tuple[float, float]:
    """The $ per 1M (input, output) tokens a run counts: the given prices, else the known ones. A cost
    budget on a model of unknown price is refused: it would count nothing and never end the run."""
    if price_in is not None and price_out is not None:
        return (price_in, price_out)
    known = known_price(name)
    if known is None and max_cost_usd is not None:
        raise UserError(
            f"--max-cost: llmnas does not know the price of {name}; give it with --price-in and "
            "--price-out (USD per million prompt and completion tokens)"
        )
    return known or (0.0, 0.0)


@dataclass
class Usage:
    """Running totals of model use."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(
        self, ok: bool, prompt_tokens: int = 0, completion_tokens: int = 0, cost_usd: float = 0.0
    ) -> None:
        """Count one call: a failed one is a call and a failure (the meter, and a run's log read back)."""
        self.calls += 1
        self.failures += not ok
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd


class UsageMeter:
    """Wraps a ChatModel: counts tokens and cost per call, refuses calls once a budget is spent, and ends
    the run (EndpointDown) on bad credentials at once, or after ``max_unreachable`` calls in a row that
    could not connect or timed out. Rate limits and server errors are the backend's to retry: they never
    end the run."""

    def __init__(
        self,
        chat: ChatModel,
        *,
        max_tokens: int | None = None,
        max_cost_usd: float | None = None,
        price_per_m: tuple[float, float] | None = None,
        on_call: Callable[[dict], None] | None = None,
        usage: Usage | None = None,
        max_unreachable: int = 3,
    ):
        self.chat = chat
        self.max_unreachable = max_unreachable
        self._unreachable = 0
        self.name = chat.name
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd
        self.price_per_m = price_per_m if price_per_m is not None else known_price(chat.name) or (0.0, 0.0)
        self.on_call = on_call
        self.usage = usage or Usage()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise BudgetExhausted if a budget is already spent."""
        u = self.usage
        if self.max_tokens is not None and u.tokens >= self.max_tokens:
            raise BudgetExhausted(f"LLM token budget spent ({u.tokens:,} of {self.max_tokens:,} tokens)")
        if self.max_cost_usd is not None and u.cost_usd >= self.max_cost_usd:
            raise BudgetExhausted(f"LLM cost budget spent (${u.cost_usd:.4f} of ${self.max_cost_usd:.4f})")

    @property
    def mode(self) -> str:
        """The wrapped backend's mode (chat or completion)."""
        return getattr(self.chat, "mode", "chat")

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]:
        return self._metered(
            lambda: self.chat.complete(messages, temperature=temperature, n=n, max_tokens=max_tokens),
            temperature,
            n,
        )

    def complete_text(
        self,
        prompt: str,
        *,
        temperature: float,
        n: int = 1,
        max_tokens: int = 2048,
        stop: list[str] | None = None,
    ) -> list[Completion]:
        """Completion mode, metered like ``complete``."""
        return self._metered(
            lambda: self.chat.complete_text(  # type: ignore[attr-defined]
                prompt, temperature=temperature, n=n, max_tokens=max_tokens, stop=stop
            ),
            temperature,
            n,
        )

    def _metered(self, call: Callable[[], list[Completion]], temperature: float, n: int) -> list[Completion]:
        with self._lock:
            self.check()
        start = time.perf_counter()
        record: dict[str, Any] = {"model": self.name, "temperature": temperature, "n": n}
        try:
            completions = call()
        except LLMError as e:
            record.update(ok=False, error=str(e), seconds=round(time.perf_counter() - start, 3))
            with self._lock:
                self.usage.add(ok=False)
                self._unreachable = self._unreachable + 1 if e.kind in ("connection", "timeout") else 0
                unreachable = self._unreachable
            self._emit(record)
            if e.kind == "auth":
                raise EndpointDown(f"{e} (the endpoint refuses our credentials)") from None
            if unreachable >= self.max_unreachable:
                hint = "; a slow model may need a longer --llm-timeout" if e.kind == "timeout" else ""
                raise EndpointDown(f"{e} ({unreachable} calls in a row got no answer{hint})") from None
            raise
        with self._lock:
            self._unreachable = 0
        prompt = max((c.prompt_tokens for c in completions), default=0)
        generated = sum(c.completion_tokens for c in completions)
        cost = (prompt * self.price_per_m[0] + generated * self.price_per_m[1]) / 1e6
        with self._lock:
            self.usage.add(True, prompt, generated, cost)
        record.update(
            ok=True,
            prompt_tokens=prompt,
            completion_tokens=generated,
            cost_usd=cost,
            seconds=round(time.perf_counter() - start, 3),
        )
        self._emit(record)
        return completions

    def totals(self) -> dict[str, Any]:
        """The running totals as a JSON-able dict."""
        with self._lock:
            return asdict(self.usage)

    def _emit(self, record: dict) -> None:
        if self.on_call is not None:
            self.on_call(record)
