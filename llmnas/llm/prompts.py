"""Prompt templates (prompts/*.md) rendered strictly: every ``$name`` must be given, and nothing else.

Text that earlier candidates or replies wrote (code, error messages) goes into a prompt only ``fenced``:
in a code fence longer than any run of backticks in it, so nothing in it can close the fence, and the
templates say that fenced text is data, never instructions. ``clipped`` keeps such text short.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import string
from collections.abc import Mapping
from importlib.resources.abc import Traversable

from llmnas.metrics import REPORTED_ONLY
from llmnas.safe_text import escape_controls
from llmnas.task.spec import TaskSpec


class PromptError(ValueError):
    """A template that is missing, malformed, or rendered with the wrong variables."""


def _root() -> Traversable:
    """The templates folder: the top-level prompts/, installed as the package ``llmnas.templates``."""
    return importlib.resources.files("llmnas.templates")


@functools.cache
def _templates() -> dict[str, string.Template]:
    found = {
        p.name[:-3]: string.Template(p.read_text("utf-8"))
        for p in _root().iterdir()
        if p.name.endswith(".md")
    }
    if not found:
        raise PromptError(f"no prompt templates found under {_root()}")
    return found


def names() -> tuple[str, ...]:
    """The template names, sorted."""
    return tuple(sorted(_templates()))


def variables(name: str) -> frozenset[str]:
    """The placeholders a template needs; a malformed ``$`` is a PromptError."""
    template = _get(name)
    found = set()
    for m in template.pattern.finditer(template.template):
        if m.group("invalid") is not None:
            line = template.template.count("\n", 0, m.start()) + 1
            raise PromptError(f"prompt {name!r}: stray '$' on line {line} (write $$ for a literal dollar)")
        found.add(m.group("named") or m.group("braced") or "")
    return frozenset(found - {""})


def render(name: str, **values: object) -> str:
    """Fill template ``name``; a missing or an unused variable raises PromptError naming it."""
    needed = variables(name)
    missing, extra = sorted(needed - values.keys()), sorted(values.keys() - needed)
    if missing:
        raise PromptError(f"prompt {name!r} needs variable(s) {', '.join(missing)}")
    if extra:
        raise PromptError(f"prompt {name!r} does not use variable(s) {', '.join(extra)}")
    # Values can hold text a candidate wrote (error messages, code): control characters are escaped.
    return _get(name).substitute({k: escape_controls(str(v)) for k, v in values.items()}).strip()


_BACKTICKS = re.compile(r"`+")


def fenced(text: str, info: str = "") -> str:
    """``text`` in a Markdown code fence it cannot close: more backticks than its longest run of them.
    ``info`` (``python``) is ours, never the text's."""
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.strip(chr(10))}\n{fence}"


def clipped(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}\n[... {len(text) - limit:,} more characters left out]"


def _get(name: str) -> string.Template:
    try:
        return _templates()[name]
    except KeyError:
        raise PromptError(f"no prompt template {name!r}; known: {', '.join(names())}") from None


def format_spec(spec: TaskSpec) -> str:
    """The spec as the bullet list the prompts show: task, data, every limit and target, notes."""
    shape = "x".join(map(str, spec.input_shape)) if spec.input_shape else "not given"
    lines = [
        f"- task: {spec.task}",
        f"- number of classes: {spec.num_classes if spec.num_classes is not None else 'not given'}"
        if spec.task == "classification"
        else "- outputs: one value per sample (num_classes is 1: return shape (batch, 1), no activation); "
        "trained with mean squared error on standardised targets",
        f"- input shape (without batch): {shape}"
        + (f" = {tuple(spec.input_shape)}" if spec.input_shape else ""),
        f"- modality: {spec.modality or 'not given'}",
        "- hard limits (a model over any one is rejected): " + (", ".join(_limits(spec)) or "none"),
        "- targets (meeting them raises the score): " + (", ".join(_targets(spec)) or "none"),
    ]
    if spec.hints:
        lines.append("- hints: " + ", ".join(spec.hints))
    if spec.priorities:
        lines.append("- priorities, most important first: " + " > ".join(spec.order()))
    if spec.not_understood:
        lines.append("- other requirements: " + " | ".join(spec.not_understood))
    if spec.text:
        lines.append(f"- the user's words: {spec.text}")
    return "\n".join(lines)


def _limits(spec: TaskSpec) -> list[str]:
    return [
        *([f"at most {spec.max_params:,} parameters"] if spec.max_params else []),
        *(
            [f"at most {spec.max_latency_ms:g} ms latency per sample (batch 1)"]
            if spec.max_latency_ms
            else []
        ),
        *([f"at most {spec.max_flops:,} FLOPs per sample"] if spec.max_flops else []),
        *([f"at most {spec.max_memory_mb:g} MiB peak memory at inference"] if spec.max_memory_mb else []),
    ]


def _targets(spec: TaskSpec) -> list[str]:
    return [
        *([f"about {spec.target_params:,} parameters"] if spec.target_params else []),
        *([f"about {spec.target_latency_ms:g} ms latency"] if spec.target_latency_ms else []),
        *spec.floor_lines(),
    ]


def format_metrics(metrics: Mapping[str, float], reward: float | None = None) -> str:
    """Metrics as one readable line, e.g. ``val_acc=0.9312, params=12,345, reward=0.8810``."""
    items = {k: v for k, v in metrics.items() if k not in REPORTED_ONLY}  # test accuracy never steers
    if reward is not None:
        items["reward"] = reward
    if not items:
        return "not evaluated yet"
    return ", ".join(f"{k}={_number(v)}" for k, v in items.items())


def _number(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if float(v).is_integer() and abs(v) >= 1000:
        return f"{int(v):,}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
