"""The local backend of the ChatModel seam: a transformers causal LM on this machine (a model folder, a
hub id already downloaded, or a GGUF file), in chat or completion mode, with adapters for fine-tuning."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from llmnas.config import resolve_device
from llmnas.llm.chat import Completion, LLMError, Messages, check_mode, transcript

log = logging.getLogger("llmnas.llm.local")


class HFChat:
    """A local transformers causal LM. ``model`` and ``tokenizer`` are exposed for fine-tuning.

    ``path`` is a model folder or hub id, a ``.gguf`` file, or a folder holding one ``.gguf`` file
    (GGUF weights are de-quantised by transformers; needs ``pip install 'llmnas[gguf]'``). In auto mode
    a tokenizer with no chat template (a base model) puts it in completion mode. ``device``: cpu, cuda
    or auto (cuda when there is one)."""

    def __init__(
        self,
        path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int | None = None,
        top_p: float = 0.95,
        mode: str = "auto",
    ):
        try:
            import torch
            import transformers
        except ImportError as e:
            raise LLMError("--llm hf: needs transformers and torch: pip install transformers torch") from e
        self._torch = torch
        self.name = f"hf:{path}"
        self.path = path
        self.device = resolve_device(device, torch.cuda.is_available())
        if dtype == "auto":
            cuda_bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
            dtype = "bfloat16" if cuda_bf16 else "float32"
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise LLMError(f"hf: unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
        folder, gguf = gguf_location(path)
        options: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **options)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                folder, dtype=getattr(torch, dtype), **options
            )
        except (OSError, ValueError) as e:
            raise LLMError(f"--llm hf:{path}: cannot load the model ({e})") from e
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self._lock = threading.Lock()
        self._adapters = 0
        self.requested_mode = check_mode(mode)
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.mode = mode if mode != "auto" else ("chat" if has_template else "completion")
        if mode == "auto" and not has_template:
            log.info("%s has no chat template (a base model?): using completion mode", self.name)

    def render(self, messages: Messages) -> str:
        """The prompt text: the tokenizer's chat template if it has one, else a plain transcript."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return transcript(messages)

    def complete(
        self, messages: Messages, *, temperature: float, n: int = 1, max_tokens: int = 2048
    ) -> list[Completion]:
        """Sample ``n`` replies (greedy and repeated when temperature is 0); only new text is returned."""
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        return self._generate(self.render(messages), not has_template, temperature, n, max_tokens, None)

    def complete_text(
        self,
        prompt: str,
        *,
        temperature: float,
        n: int = 1,
        max_tokens: int = 2048,
        stop: list[str] | None = None,
    ) -> list[Completion]:
        """Continue ``prompt`` (completion mode); generation ends early at any string in ``stop``, which
        is cut off the returned text."""
        return self._generate(prompt, True, temperature, n, max_tokens, stop)

    def _generate(
        self,
        text: str,
        special_tokens: bool,
        temperature: float,
        n: int,
        max_tokens: int,
        stop: list[str] | None,
    ) -> list[Completion]:
        torch, tok = self._torch, self.tokenizer
        inputs = tok(text, return_tensors="pt", add_special_tokens=special_tokens).to(self.device)
        sample = temperature > 0
        limit = min(max_tokens, self.max_new_tokens) if self.max_new_tokens else max_tokens
        options: dict[str, Any] = {"max_new_tokens": limit, "do_sample": sample}
        if stop:
            options.update(stop_strings=list(stop), tokenizer=tok)
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
        completions = [self._completion(row[start:].tolist(), start, stop) for row in out]
        return completions if sample else completions * n

    def _completion(self, ids: list[int], prompt_tokens: int, stop: list[str] | None = None) -> Completion:
        stops: set[int] = set()
        for eos in (self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id):
            stops.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        end = next((i + 1 for i, t in enumerate(ids) if t in stops), len(ids))
        text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
        return Completion(cut_at_stop(text, stop), prompt_tokens, end)

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


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """``text`` up to the first of the ``stop`` strings (as an OpenAI server returns it)."""
    cut = min((i for s in stop or () if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def gguf_location(path: str) -> tuple[str, str | None]:
    """(folder, GGUF file name) for a ``.gguf`` file or a folder holding exactly one and no config.json;
    (path, None) for anything else. A GGUF without the ``gguf`` package is an LLMError naming the extra."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise LLMError(f"--llm hf:{path}: no such GGUF file")
        folder, name = p.parent, p.name
    elif p.is_dir() and not (p / "config.json").is_file() and len(found := sorted(p.glob("*.gguf"))) == 1:
        folder, name = p, found[0].name
    else:
        return path, None
    try:
        import gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError:
        raise LLMError(
            f"--llm hf:{path} is a GGUF model: reading it needs the gguf package: pip install 'llmnas[gguf]'"
        ) from None
    return str(folder), name
