"""The ChatModel seam: an OpenAI-compatible HTTP backend and a local HuggingFace backend (metering in
llm/usage.py, replay of recorded replies in llm/replay.py).

Two modes. ``chat``: messages in, a reply out. ``completion``: for base models with no chat template,
a text prompt (the start of a Python file) in, its continuation out (``complete_text``); chat messages
sent to a model in completion mode go as a plain transcript. ``auto`` picks completion mode for a local
model without a chat template, and for an endpoint whose chat call fails because the model has none.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from llmnas.errors import UserError

log = logging.getLogger("llmnas.llm.chat")

Messages = list[dict[str, str]]
Mode = Literal["auto", "chat", "completion"]
MODES: tuple[str, ...] = ("auto", "chat", "completion")
CONNECTION_RETRIES = 2  # a refused connection rarely heals within seconds: the meter decides when to stop


class LLMError(RuntimeError):
    """A failed model call, in one line; ``retryable`` says whether trying again later may help and
    ``kind`` what went wrong: connection, auth, timeout, rate, or other."""

    def __init__(self, message: str, *, retryable: bool = False, kind: str = "other"):
        super().__init__(" ".join(str(message).split()))
        self.retryable = retryable
        self.kind = kind
        self.status: int | None = None  # the HTTP status, when there was one


class RunEnding(LLMError):
    """Not one proposal's failure: the run ends here (finished work is saved; resume continues)."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class BudgetExhausted(RunEnding):
    """The token or cost budget is spent: the run ends cleanly."""


class EndpointDown(RunEnding):
    """The endpoint refuses us (bad credentials) or cannot be reached call after call."""


class NoChatTemplate(LLMError):
    """The endpoint's model has no chat template (a base model). In auto mode the backend has switched
    to completion mode when this is raised: ask again with a completion prompt."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False, kind="template")


# What servers say when a model has no chat template (transformers serve, vLLM, llama.cpp, TGI).
_TEMPLATE_ERROR = re.compile(r"chat[ _-]?template|no template|apply_chat_template", re.I)
# A server error with no detail (starlette's plain-text 500): worth checking whether completions work.
_BARE_ERROR = re.compile(r"HTTP \d+: (?:Error code: \d+|Internal Server Error)\b[^:]*(?::|$)", re.I)


@dataclass(frozen=True)
class Completion:
    """One sampled reply. ``prompt_tokens`` is the prompt's size, shared by the samples of one call."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel(Protocol):
    """Anything that turns chat messages into ``n`` sampled replies.

    A backend that can also continue raw text has ``mode`` ("chat" or "completion", the mode in use)
    and ``complete_text(prompt, *, temperature, n, max_tokens, stop)``; see ``completion_mode``."""

    name: str

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]: ...


def completion_mode(chat: Any) -> bool:
    """Whether ``chat`` (or the backend it wraps) is in completion mode now."""
    return getattr(chat, "mode", "chat") == "completion" and hasattr(chat, "complete_text")


def transcript(messages: Messages) -> str:
    """Chat messages as plain text for a model without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*lines, "Assistant:"])


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"llm_mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


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
        mode: str = "auto",
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
        self.requested_mode = check_mode(mode)
        self.mode = "completion" if mode == "completion" else "chat"
        self._chat_worked = False  # a chat call has succeeded: later failures are not a missing template
        self._probed = False

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]:
        """Sample ``n`` replies; an empty or missing reply comes back as text "".

        In completion mode the messages go to /v1/completions as a plain transcript. In auto mode, a
        chat call refused because the model has no chat template switches to completion mode (logged
        once) and raises NoChatTemplate, so that the caller can ask again with a completion prompt."""
        if self.mode == "completion":
            return self.complete_text(
                transcript(messages), temperature=temperature, n=n, max_tokens=max_tokens
            )
        request: dict[str, Any] = {"model": self.model, "messages": messages, "n": n}
        return self._call(self._client.chat.completions.create, request, temperature, max_tokens)

    def complete_text(
        self,
        prompt: str,
        *,
        temperature: float,
        n: int = 1,
        max_tokens: int = 2048,
        stop: list[str] | None = None,
    ) -> list[Completion]:
        """Continue ``prompt`` through /v1/completions (``n`` samples); only the new text comes back."""
        request: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": n}
        if stop:
            request["stop"] = list(stop)[:4]  # the OpenAI API takes at most four
        return self._call(self._client.completions.create, request, temperature, max_tokens)

    def _call(
        self, create: Any, base: dict[str, Any], temperature: float, max_tokens: int
    ) -> list[Completion]:
        """One request with the retry policy: backoff on retryable errors, adapt once to refusals."""
        attempt = 0
        while True:
            request = {**base, self._token_param: max_tokens}
            if self._send_temperature:
                request["temperature"] = temperature
            try:
                with self._slots:
                    response = create(**request)
                self._chat_worked |= "messages" in base
                return _completions(response)
            except Exception as e:  # classified below; anything unknown is re-raised there
                error, retry_after = self._classify(e)
            if "messages" in base and _TEMPLATE_ERROR.search(str(error)):
                raise self._no_template(error) from None
            tries = (
                min(self.max_retries, CONNECTION_RETRIES) if error.kind == "connection" else self.max_retries
            )
            if "messages" in base and self._completions_answer(error, attempt, tries):
                raise self._no_template(error) from None
            if not error.retryable and self._adapt(str(error)):
                continue
            if not error.retryable or attempt >= tries:
                if error.retryable:
                    message = f"{error} (gave up after {attempt + 1} attempts)"
                    raise LLMError(message, retryable=True, kind=error.kind) from None
                raise error
            delay = self._delay(attempt, retry_after)
            attempt += 1
            log.warning("%s: %s; retry %d/%d in %.1fs", self.name, error, attempt, self.max_retries, delay)
            time.sleep(delay)

    def _completions_answer(self, error: LLMError, attempt: int, tries: int) -> bool:
        """Auto mode, the first chat call failing again with a bare server error (transformers serve
        answers a missing template with "500 Internal Server Error" and no detail): if a one-token
        /v1/completions request works, the model lacks a chat template. Asked once per backend."""
        if self.requested_mode != "auto" or self._chat_worked or self._probed or error.kind != "other":
            return False
        if not str(getattr(error, "status", "")).startswith(("5", "400", "422")) or attempt < min(1, tries):
            return False
        if not _BARE_ERROR.search(str(error)):  # the server said what went wrong: believe it
            return False
        self._probed = True
        for attempt in range(2):  # uvicorn drops the connection after a 500: the first try may hit it
            try:
                with self._slots:
                    self._client.completions.create(model=self.model, prompt="import torch\n", max_tokens=1)
                break
            except self._openai.APIConnectionError:
                if attempt:
                    return False
            except Exception:  # noqa: BLE001 - completions fail too: a plain server error, not a template
                return False
        log.warning("%s: chat fails (%s) but /v1/completions answers", self.name, error)
        return True

    def _no_template(self, error: LLMError) -> LLMError:
        """A chat call refused for want of a chat template: switch to completion mode in auto mode."""
        if self.requested_mode != "auto":
            return LLMError(f"{error}: the model has no chat template; use --llm-mode completion")
        if self.mode != "completion":
            self.mode = "completion"
            log.warning(
                "%s has no chat template (a base model?): switching to completion mode (/v1/completions)",
                self.name,
            )
        return NoChatTemplate(f"{self.name}: the model has no chat template; now in completion mode")

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
            error = LLMError(f"{where}: HTTP {status}: {detail}", retryable=True, kind=kind)
            error.status = status
            return error, _retry_after(e.response)
        if status in (401, 403):
            hint = "set OPENAI_API_KEY or pass --api-key"
            return LLMError(f"{where}: HTTP {status}: {detail}: {hint}", kind="auth"), None
        elif status == 404:
            hint = "check the model name and URL in --llm (an OpenAI-compatible base URL usually ends in /v1)"
        else:
            hint = "the endpoint rejected the request; check the --llm model supports chat completions"
        error = LLMError(f"{where}: HTTP {status}: {detail}: {hint}")
        error.status = status
        return error, None


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
    texts = [_choice_text(c) for c in response.choices or []] or [""]
    share, extra = divmod(generated, len(texts))
    return [Completion(t, prompt, share + (extra if i == 0 else 0)) for i, t in enumerate(texts)]


def _choice_text(choice: Any) -> str:
    """A chat choice's message content, or a text completion's text."""
    message = getattr(choice, "message", None)
    if message is not None:
        return message.content or ""
    return getattr(choice, "text", None) or ""


# --------------------------------------------------------------------------- local HuggingFace
