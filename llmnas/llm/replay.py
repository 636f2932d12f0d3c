"""Exact resume for language models: replies recorded in the run log are served again for the same
requests, and every new reply is recorded."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence

from llmnas.llm.chat import ChatModel, Completion, Messages


def prompt_key(messages: Messages, temperature: float, n: int, max_tokens: int) -> str:
    """A stable id of one request, for replaying recorded replies."""
    blob = json.dumps([messages, temperature, n, max_tokens], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class ReplayChat:
    """Serves replies recorded in the run log for requests already made (exact resume), and records
    every new reply through ``on_reply``. Requests repeated verbatim replay in their recorded order."""

    def __init__(
        self,
        chat: ChatModel,
        recorded: Iterable[tuple[str, Sequence[str]]],
        on_reply: Callable[[str, list[str]], None],
    ):
        self.chat = chat
        self.name = chat.name
        self.on_reply = on_reply
        self._queue: dict[str, deque[Sequence[str]]] = defaultdict(deque)
        for key, texts in recorded:
            self._queue[key].append(texts)

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]:
        key = prompt_key(messages, temperature, n, max_tokens)
        if self._queue[key]:
            return [Completion(text) for text in self._queue[key].popleft()]
        completions = self.chat.complete(messages, temperature=temperature, n=n, max_tokens=max_tokens)
        self.on_reply(key, [c.text for c in completions])
        return completions

    @property
    def mode(self) -> str:
        """The wrapped backend's mode (chat or completion)."""
        return getattr(self.chat, "mode", "chat")

    def complete_text(
        self,
        prompt: str,
        *,
        temperature: float,
        n: int = 1,
        max_tokens: int = 2048,
        stop: list[str] | None = None,
    ) -> list[Completion]:
        """Completion mode: replayed and recorded like ``complete`` (keyed by the prompt text and stops)."""
        key = prompt_key(
            [{"role": "completion", "content": prompt, "stop": "\x00".join(stop or ())}],
            temperature,
            n,
            max_tokens,
        )
        if self._queue[key]:
            return [Completion(text) for text in self._queue[key].popleft()]
        completions = self.chat.complete_text(  # type: ignore[attr-defined]
            prompt, temperature=temperature, n=n, max_tokens=max_tokens, stop=stop
        )
        self.on_reply(key, [c.text for c in completions])
        return completions
