"""``--llm`` to a backend: offline (None), an OpenAI-compatible endpoint, or a local model."""

from __future__ import annotations

from llmnas.errors import UserError
from llmnas.llm.chat import ChatModel, OpenAIChat, check_mode
from llmnas.llm.local import HFChat


def parse_llm(
    spec: str,
    *,
    api_key: str | None = None,
    timeout_s: float = 120,
    max_retries: int = 5,
    concurrency: int = 4,
    mode: str = "auto",
    device: str = "auto",
) -> ChatModel | None:
    """Build the backend named by ``--llm``: offline | openai:MODEL | URL#MODEL | hf:PATH (a model
    folder or hub id, FILE.gguf or a folder with one); ``mode``: auto | chat | completion; ``device``
    (cpu, cuda, auto) is where a local model runs."""
    spec = spec.strip()
    forms = "offline, openai:MODEL, http(s)://HOST/v1#MODEL or hf:PATH"
    http = {
        "api_key": api_key,
        "timeout_s": timeout_s,
        "max_retries": max_retries,
        "concurrency": concurrency,
        "mode": check_mode(mode),
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
        return HFChat(spec[3:].strip(), device=device, mode=mode)
    raise UserError(f"--llm {spec!r} is not understood; use one of: {forms}")
