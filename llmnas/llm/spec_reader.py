"""Requirements to a TaskSpec with a chat model, cross-checked against (and falling back to) the rule parser."""

from __future__ import annotations

import json
import math
import re

from pydantic import ValidationError

from llmnas.llm.chat import ChatModel, EndpointDown, LLMError
from llmnas.llm.prompts import render
from llmnas.task.requirements import parse_requirements
from llmnas.task.spec import TaskSpec

# Fields the model may not set: the user's text is kept verbatim, reward weights stay with the config.
_NOT_FROM_MODEL = (
    "text",
    "reward_alpha",
    "reward_beta",
    "hints",
    "assumptions",
    "not_understood",
    "contradictions",
)
_NUMBERS = (
    "num_classes",
    "max_params",
    "max_bytes",
    "max_latency_ms",
    "max_flops",
    "max_memory_mb",
    "target_params",
    "target_latency_ms",
)
_RULES_KEEP = ("hints", "assumptions", "not_understood", "contradictions", "reward_alpha", "reward_beta")


def spec_schema() -> dict:
    """TaskSpec's JSON schema without the fields the model may not set, titles dropped."""
    schema = TaskSpec.model_json_schema()
    props = {
        k: {kk: vv for kk, vv in v.items() if kk != "title"}
        for k, v in schema["properties"].items()
        if k not in _NOT_FROM_MODEL
    }
    return {"type": "object", "properties": props, "additionalProperties": False}


def spec_from_llm(text: str, chat: ChatModel) -> tuple[TaskSpec, list[str]]:
    """Ask the model for the spec; numbers (and a task) the rule parser found win. Any model failure falls
    back to rules.

    Returns the spec and warning lines. Raises SpecError (from the rule parser) and EndpointDown when the
    endpoint refuses our credentials: no search can run then.
    """
    rules = parse_requirements(text)
    schema = spec_schema()
    prompt = render("spec_extraction", text=rules.text, schema=json.dumps(schema, indent=1))
    messages = [{"role": "user", "content": prompt}]
    try:
        reply = chat.complete(messages, temperature=0.0, n=1, max_tokens=1024)[0].text
    except LLMError as e:
        if e.kind == "auth":
            raise EndpointDown(f"{e} (the endpoint refuses our credentials)") from None
        return rules, [f"the model could not read the requirements ({e}); used the rule-based parser"]
    data = json_object(reply)
    if data is None:
        return rules, ["the model's reply held no JSON object; used the rule-based parser"]
    fields = schema["properties"]
    warnings = [f"ignored field {k!r} from the model" for k in data if k not in fields]
    data = {k: v for k, v in data.items() if k in fields and v is not None}
    try:
        spec = TaskSpec.model_validate({**data, "text": rules.text})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"]))
        return rules, [f"the model's spec is invalid ({where}: {first['msg']}); used the rule-based parser"]
    fixed: dict[str, object] = {}
    if "task" in rules.model_fields_set and spec.task != rules.task:  # the words the user wrote win
        fixed["task"] = rules.task
        warnings.append(f"task: the model said {spec.task}, the text says {rules.task}; kept {rules.task}")
    for field in _NUMBERS:
        ours, theirs = getattr(rules, field), getattr(spec, field)
        if ours is None or (theirs is not None and math.isclose(ours, theirs, rel_tol=1e-6)):
            continue
        fixed[field] = ours
        said = "nothing" if theirs is None else f"{theirs:g}"
        warnings.append(f"{field}: the model said {said}, the text says {ours:g}; kept {ours:g}")
    for field in ("floors", "priorities", "size_word", "modality"):  # what the words stated wins here too
        if (
            field in rules.model_fields_set
            and getattr(rules, field)
            and getattr(spec, field) != getattr(rules, field)
        ):
            fixed[field] = getattr(rules, field)
            warnings.append(
                f"{field}: the model said {getattr(spec, field)!r}, the text says {getattr(rules, field)!r}"
            )
    merged = {**spec.model_dump(), **fixed, **{k: getattr(rules, k) for k in _RULES_KEEP}}
    if merged["target_params"] and merged["max_params"] and merged["target_params"] > merged["max_params"]:
        warnings.append("target_params was above max_params; lowered it to the limit")
        merged["target_params"] = merged["max_params"]
    return TaskSpec.model_validate(merged), warnings


def json_object(reply: str) -> dict | None:
    """The first JSON object in a reply: inside a ``` fence if there is one, else anywhere in the prose."""
    fenced = re.findall(r"```(?:json|JSON)?\s*\n(.*?)```", reply, flags=re.DOTALL)
    decoder = json.JSONDecoder()
    for chunk in [*fenced, reply]:
        for m in re.finditer(r"\{", chunk):
            try:
                value, _ = decoder.raw_decode(chunk, m.start())
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None
