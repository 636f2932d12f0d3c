"""The ChatModel seam: an OpenAI-compatible HTTP backend and a local HuggingFace backend (metering in
llm/usage.py, replay of recorded replies in llm/replay.py)."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from llmnas.errors import UserError

log = logging.getLogger("llmnas.llm.chat")

Messages = list[dict[str, str]]
CONNECTION_RETRIES = 2  # a refused connection rarely heals within seconds: the meter decides when to stop


class LLMError(RuntimeError):
    """A failed model call, in one line; ``retryable`` says whether trying again later may help and
    ``kind`` what went wrong: connection, auth, timeout, rate, or other."""

    def __init__(self, message: str, *, retryable: bool = False, kind: str = "other"):
        super().__init__(" ".join(str(message).split()))
        self.retryable = retryable
        self.kind = kind


class RunEnding(LLMError):
    """Not one proposal's failure: the run ends here (finished work is saved; resume continues)."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class BudgetExhausted(RunEnding):
    """The token or cost budget is spent: the run ends cleanly."""


class EndpointDown(RunEnding):
    """The endpoint refuses us (bad credentials) or cannot be reached call after call."""


@dataclass(frozen=True)
class Completion:
    """One sampled reply. ``prompt_tokens`` is the prompt's size, shared by the samples of one call."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel(Protocol):
    """Anything that turns chat messages into ``n`` sampled replies."""

    name: str

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]: ...


# --------------------------------------------------------------------------- OpenAI-compatible HTTP


class OpenAIChat:
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp, ...).

    The client's own retries are off; this class retries 429, 5xx, timeouts, dropped connections and
    unreadable bodies with exponential backoff and jitter (honouring Retry-After), and limits how many
    requests are in flight at once across all threads that share it.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        concurrency: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ):
        try:
            import openai
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise LLMError("the openai package is missing: pip install openai") from e
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("EMPTY" if base_url else None)
        if not key:
            raise LLMError(f"no API key for openai:{model}: set OPENAI_API_KEY or pass --api-key")
        self.model = model
        self.base_url = base_url
        self.name = f"{base_url}#{model}" if base_url else f"openai:{model}"
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._jitter = random.Random()
        self._token_param = "max_tokens"
        self._send_temperature = True

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]:
        """Sample ``n`` replies; an empty or missing reply comes back as text ""."""
        attempt = 0
        while True:
            request: dict[str, Any] = {
                "model": self.model,
                "messages": messages,
                "n": n,
                self._token_param: max_tokens,
            }
            if self._send_temperature:
                request["temperature"] = temperature
            try:
                with self._slots:
                    response = self._client.chat.completions.create(**request)
                return _completions(response)
            except Exception as e:  # classified below; anything unknown is re-raised there
                error, retry_after = self._classify(e)
            if not error.retryable and self._adapt(str(error)):
                continue
            tries = (
                min(self.max_retries, CONNECTION_RETRIES) if error.kind == "connection" else self.max_retries
            )
            if not error.retryable or attempt >= tries:
                if error.retryable:
                    message = f"{error} (gave up after {attempt + 1} attempts)"
                    raise LLMError(message, retryable=True, kind=error.kind) from None
                raise error
            delay = self._delay(attempt, retry_after)
            attempt += 1
            log.warning("%s: %s; retry %d/%d in %.1fs", self.name, error, attempt, self.max_retries, delay)
            time.sleep(delay)

    def _adapt(self, message: str) -> bool:
        """Newer OpenAI models reject ``max_tokens`` and non-default temperatures: adjust once and resend."""
        if self._token_param == "max_tokens" and "max_completion_tokens" in message:
            self._token_param = "max_completion_tokens"
            return True
        if self._send_temperature and "temperature" in message and "unsupported" in message.lower():
            self._send_temperature = False
            return True
        return False

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        base = min(self.backoff_s * 2**attempt, self.max_backoff_s)
        return base / 2 + self._jitter.uniform(0, base / 2)

    def _classify(self, e: Exception) -> tuple[LLMError, float | None]:
        """Map a client exception to an LLMError (retryable or not) and a Retry-After delay."""
        oa, where = self._openai, self.name
        if isinstance(e, oa.APITimeoutError):
            return LLMError(f"{where}: request timed out", retryable=True, kind="timeout"), None
        if isinstance(e, oa.APIConnectionError):
            message = f"{where}: cannot connect ({e}); is the server running?"
            return LLMError(message, retryable=True, kind="connection"), None
        if isinstance(e, ValueError):  # an unreadable body (a proxy's HTML page, a truncated reply)
            return LLMError(f"{where}: unreadable response ({type(e).__name__}: {e})", retryable=True), None
        if not isinstance(e, oa.APIStatusError):
            raise e
        status, detail = e.status_code, _detail(e)
        if status == 429 or status >= 500 or status in (408, 409):
            kind = "rate" if status == 429 else "other"
            return LLMError(f"{where}: HTTP {status}: {detail}", retryable=True, kind=kind), _retry_after(
                e.response
            )
        if status in (401, 403):
            hint = "set OPENAI_API_KEY or pass --api-key"
            return LLMError(f"{where}: HTTP {status}: {detail}: {hint}", kind="auth"), None
        elif status == 404:
            hint = "check the model name and URL in --llm (an OpenAI-compatible base URL usually ends in /v1)"
        else:
            hint = "the endpoint rejected the request; check the --llm model supports chat completions"
        return LLMError(f"{where}: HTTP {status}: {detail}: {hint}"), None


def _detail(e: Any) -> str:
    body = getattr(e, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(inner, dict) and inner.get("message"):
        return str(inner["message"])[:300]
    return str(e)[:300]


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: fall back to our own backoff
    return None


def _completions(response: Any) -> list[Completion]:
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    generated = int(getattr(usage, "completion_tokens", 0) or 0)
    texts = [(c.message.content if c.message else None) or "" for c in response.choices or []] or [""]
    share, extra = divmod(generated, len(texts))
    return [Completion(t, prompt, share + (extra if i == 0 else 0)) for i, t in enumerate(texts)]


# --------------------------------------------------------------------------- local HuggingFace


class HFChat:
    """A local transformers causal LM. ``model`` and ``tokenizer`` are exposed for fine-tuning."""

    def __init__(
        self,
        path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int | None = None,
        top_p: float = 0.95,
    ):
        try:
            import torch
            import transformers
        except ImportError as e:
            raise LLMError("--llm hf: needs transformers and torch: pip install transformers torch") from e
        self._torch = torch
        self.name = f"hf:{path}"
        self.path = path
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if dtype == "auto":
            cuda_bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
            dtype = "bfloat16" if cuda_bf16 else "float32"
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise LLMError(f"hf: unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as e:
            raise LLMError(f"--llm hf:{path}: cannot load the model ({e})") from e
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self._lock = threading.Lock()
        self._adapters = 0

    def render(self, messages: Messages) -> str:
        """The prompt text: the tokenizer's chat template if it has one, else a plain transcript."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join([*lines, "Assistant:"])

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]:
        """Sample ``n`` replies (greedy and repeated when temperature is 0); only new text is returned."""
        torch, tok = self._torch, self.tokenizer
        has_template = bool(getattr(tok, "chat_template", None))
        inputs = tok(self.render(messages), return_tensors="pt", add_special_tokens=not has_template).to(
            self.device
        )
        sample = temperature > 0
        limit = min(max_tokens, self.max_new_tokens) if self.max_new_tokens else max_tokens
        options: dict[str, Any] = {"max_new_tokens": limit, "do_sample": sample}
        if sample:
            options.update(temperature=temperature, top_p=self.top_p, num_return_sequences=n)
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        try:
            with self._lock, torch.inference_mode():
                out = self.model.generate(**inputs, pad_token_id=pad, **options)
        except (RuntimeError, ValueError) as e:
            raise LLMError(f"{self.name}: generation failed ({type(e).__name__}: {e})") from e
        start = inputs["input_ids"].shape[1]
        completions = [self._completion(row[start:].tolist(), start) for row in out]
        return completions if sample else completions * n

    def _completion(self, ids: list[int], prompt_tokens: int) -> Completion:
        stops: set[int] = set()
        for eos in (self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id):
            stops.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        end = next((i + 1 for i, t in enumerate(ids) if t in stops), len(ids))
        text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
        return Completion(text, prompt_tokens, end)

    def load_adapter(self, path: str) -> None:
        """Load a peft LoRA adapter from ``path`` and make it the active one (replacing any earlier one)."""
        try:
            from peft import PeftModel
        except ImportError as e:
            raise LLMError(
                "loading a LoRA adapter needs peft: pip install 'llmnas[finetune]' (or peft)"
            ) from e
        with self._lock:
            self._adapters += 1
            name = f"round{self._adapters}"
            if isinstance(self.model, PeftModel):
                previous = self.model.active_adapter
                self.model.load_adapter(path, adapter_name=name)
                self.model.set_adapter(name)
                self.model.delete_adapter(previous)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.to(self.device).eval()


# --------------------------------------------------------------------------- factory


def parse_llm(
    spec: str,
    *,
    api_key: str | None = None,
    timeout_s: float = 120,
    max_retries: int = 5,
    concurrency: int = 4,
) -> ChatModel | None:
    """Build the backend named by ``--llm``: offline | openai:MODEL | URL#MODEL | hf:PATH."""
    spec = spec.strip()
    forms = "offline, openai:MODEL, http(s)://HOST/v1#MODEL or hf:PATH"
    http = {
        "api_key": api_key,
        "timeout_s": timeout_s,
        "max_retries": max_retries,
        "concurrency": concurrency,
    }
    if spec == "offline":
        return None
    if spec.startswith("openai:") and spec[len("openai:") :].strip():
        return OpenAIChat(spec[len("openai:") :].strip(), **http)
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.rpartition("#")
        if not url or not model.strip():
            raise UserError(
                f"--llm {spec!r}: name the model after '#', e.g. http://localhost:11434/v1#qwen2.5-coder:7b"
            )
        return OpenAIChat(model.strip(), base_url=url, **http)
    if spec.startswith("hf:") and spec[3:].strip():
        return HFChat(spec[3:].strip())
    raise UserError(f"--llm {spec!r} is not understood; use one of: {forms}")
