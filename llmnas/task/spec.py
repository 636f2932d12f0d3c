"""Plain-English requirements to a typed TaskSpec, with an offline rule-based parser."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmnas.errors import UserError


class SpecError(UserError):
    """Requirements that cannot describe a search (a contradiction, an impossible limit)."""


class TaskSpec(BaseModel):
    """What the user asked for. Limits are hard (over one rejects); targets shape the reward."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = ""
    task: Literal["classification", "regression"] = "classification"
    num_classes: int | None = Field(None, ge=1)  # the output width: 1 for regression
    input_shape: tuple[int, ...] | None = None
    modality: Literal["image", "sequence", "tabular"] | None = None
    max_params: int | None = Field(None, gt=0)
    max_latency_ms: float | None = Field(None, gt=0)
    max_flops: int | None = Field(None, gt=0)
    target_params: int | None = Field(None, gt=0)
    target_latency_ms: float | None = Field(None, gt=0)
    target_mae: float | None = Field(None, gt=0)  # regression targets, in the target's own units
    target_rmse: float | None = Field(None, gt=0)
    target_r2: float | None = Field(None, le=1)
    hints: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    reward_alpha: float = -0.07
    reward_beta: float = -0.07

    @model_validator(mode="after")
    def _outputs_fit_task(self) -> TaskSpec:
        if self.num_classes is not None and (self.num_classes == 1) != (self.task == "regression"):
            raise ValueError("classification needs at least 2 classes; regression has one output")
        return self

    def resolve(
        self, *, input_shape: tuple[int, ...], num_classes: int, modality: str, task: str = "classification"
    ) -> TaskSpec:
        """Fill what the text left open from the dataset; a contradiction is a SpecError."""
        if "task" in self.model_fields_set and self.task != task:
            raise SpecError(
                f"the requirements ask for {self.task} but --data holds a {task} target: "
                + (
                    "ask for regression, or pick a label column of classes"
                    if task == "regression"
                    else "pick a numeric target (--label-column), or ask for classification"
                )
            )
        if self.num_classes is not None and self.num_classes != num_classes:
            raise SpecError(
                f"the requirements say {self.num_classes} classes but the data has {num_classes}: "
                "fix the text or pick the matching --data"
            )
        if self.input_shape is not None and _numel(self.input_shape) != _numel(input_shape):
            raise SpecError(
                f"the requirements say input shape {self.input_shape} but the data has {input_shape}"
            )
        return self.model_copy(
            update={
                "num_classes": num_classes,
                "input_shape": input_shape,
                "modality": modality,
                "task": task,
            }
        )

    def regression_targets(self) -> list[str]:
        """The regression targets set, readable ("MAE <= 5")."""
        return [
            f"{name} {'>=' if name == 'R²' else '<='} {value:g}"
            for name, value in (("MAE", self.target_mae), ("RMSE", self.target_rmse), ("R²", self.target_r2))
            if value is not None
        ]

    def summary(self) -> str:
        """A few readable lines for the terminal and the report."""
        outputs = f"classes: {self.num_classes}" if self.task == "classification" else "outputs: 1 value"
        lines = [f"task: {self.task}, {outputs}, input: {self.input_shape} ({self.modality})"]
        limits = [
            f"params <= {self.max_params:,}" if self.max_params else "",
            f"latency <= {self.max_latency_ms:g} ms" if self.max_latency_ms else "",
            f"FLOPs <= {self.max_flops:,}" if self.max_flops else "",
        ]
        targets = [
            f"params ~ {self.target_params:,}" if self.target_params else "",
            f"latency ~ {self.target_latency_ms:g} ms" if self.target_latency_ms else "",
            *self.regression_targets(),
        ]
        lines.append("limits: " + (", ".join(x for x in limits if x) or "none"))
        lines.append("targets: " + (", ".join(x for x in targets if x) or "none"))
        if self.hints:
            lines.append("hints: " + ", ".join(self.hints))
        if self.notes:
            lines.append("not understood (kept as notes): " + " | ".join(self.notes))
        return "\n".join(lines)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


_SUFFIX = {
    "": 1,
    "k": 1_000,
    "thousand": 1_000,
    "m": 1_000_000,
    "million": 1_000_000,
    "mio": 1_000_000,
    "b": 1_000_000_000,
    "g": 1_000_000_000,
    "billion": 1_000_000_000,
}
_NUM = r"(\d+(?:[.,]\d+)?)\s*(k|thousand|million|mio|m|b|g|billion)?"
_UPPER = (
    r"(?:under|below|less than|fewer than|at most|no more than|max(?:imum)?(?:\s+of)?|within|up to|<=?|≤)"
)
_LOWER = r"(?:at least|more than|over|above|min(?:imum)?(?:\s+of)?|>=?|≥)"
_PARAMS = r"(?:param(?:eter)?s?|weights)"
# After a bare number, what makes it something other than a parameter count.
_OTHER_UNIT = (
    r"(?!\s*(?:ms|milli|us|µs|micro|sec|s\b|%|[gmk]?flops|[gm]?macs|multiply|[km]i?b\b|gi?b\b|bytes?|x\s*\d))"
)
_PLAIN_NUM = rf"{_NUM}{_OTHER_UNIT}(?![\w.])"  # a number that is not "1 ms" or "2 GFLOPs"
_BYTES = r"(\d+(?:\.\d+)?)\s*(kib|kb|mib|mb|gib|gb|bytes?)\b"
_BYTE_SCALE = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 1e3,
    "kib": 1024,
    "mb": 1e6,
    "mib": 1024**2,
    "gb": 1e9,
    "gib": 1024**3,
}
BYTES_PER_PARAM = 4  # weights are trained in float32
_FLOPS = r"(?:[gmk]?flops|[gm]?macs|multiply-adds)"
_TIME = r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|us|µs|microseconds?|s|sec|seconds?)\b"
_TIME_SCALE = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3, "sec": 1e3}
_HINTS = {"tiny": 10_000, "small": 100_000, "compact": 100_000, "lightweight": 100_000}
_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def _number(value: str, suffix: str | None) -> float:
    return float(value.replace(",", "")) * _SUFFIX[(suffix or "").lower()]


def _flops_unit(word: str) -> int:
    w = word.lower()
    return {"g": 1_000_000_000, "m": 1_000_000, "k": 1_000}.get(w[0], 1)


_QUANTITY = (
    r"(?:price|value|amount|cost|age|temperature|score|count|quantity|progression|level|rate|demand|sales"
    r"|revenue|yield|salary|income|duration|weight|height|length|energy|load)"
)
_REGRESSION = (
    rf"\bregress\w*|\b(?:predict|estimat|forecast)\w*\s+(?:the\s+|a\s+|an\s+)?(?:[\w-]+\s+)?{_QUANTITY}s?\b"
    r"|\b(?:continuous|numeric|real-valued) (?:target|output|value)"
)
_CLASSIFICATION = r"\b(?:classif\w*|recogni[sz]e|categori[sz]e|predict the (?:class|label|category))\b"
_ERRORS = r"(mean absolute error|mae|root mean squared? error|rmse|r2|r²|r-squared|r squared)"
_ERROR_FIELD = {"mean absolute error": "target_mae", "mae": "target_mae"} | dict.fromkeys(
    ("root mean square error", "root mean squared error", "rmse"), "target_rmse"
)
_UNSUPPORTED = {
    "object detection": r"\bobject detection\b|\bbounding box(?:es)?\b|\bdetect\w*\s+(?:the\s+)?objects?\b",
    "segmentation": r"\b(?:semantic |instance |image )?segmentation\b|\bsegment (?:the |each )?(?:image|pixel|object)",
    "generation": r"\b(?:text|image|sequence) generation\b|\bgenerative model\b"
    r"|\bgenerat\w*\s+(?:new\s+)?(?:text|images?|sentences?|captions?|music|audio|code)\b",
    "captioning": r"\bcaption(?:s|ing)?\b",
    "translation": r"\btranslat(?:e|es|ion|ing)\b",
}
SUPPORTED = "llmnas searches classification (one class per sample) and regression (one number per sample)"

REFINED = "\nRefined:\n"  # joins a refinement's words to the requirements so far


def parse_requirements(text: str) -> TaskSpec:
    """Rule-based parser: what it does not understand stays verbatim in ``notes``. Conflicting limits in
    one text are an error; a refinement (after ``REFINED``) replaces the limits and targets it sets."""
    first, *refinements = text.split(REFINED)
    spec = _parse(first)
    for more in refinements:
        later = _parse(more)
        changed = later.model_fields_set - {"text", "hints", "notes"}
        update = {k: getattr(later, k) for k in changed}
        update |= {"hints": tuple(dict.fromkeys(spec.hints + later.hints)), "notes": spec.notes + later.notes}
        spec = spec.model_copy(update=update)
    if spec.max_params and spec.target_params and spec.target_params > spec.max_params:
        spec = spec.model_copy(update={"target_params": spec.max_params})
    return spec.model_copy(update={"text": text.strip()})


def asked_task(text: str) -> str | None:
    """The task the requirements name (classification or regression), or None when they name none."""
    if not text.strip():
        return None
    spec = parse_requirements(text)
    return spec.task if "task" in spec.model_fields_set else None


def _parse(text: str) -> TaskSpec:
    if not text or not text.strip():
        raise SpecError('requirements text is empty: say what the model should do, e.g. "classify digits"')
    found: dict = {"text": text.strip()}
    hints: list[str] = []
    notes: list[str] = []
    limits: dict[str, dict[float, str]] = {}  # field -> {value: the clause that set it}
    tasks: dict[str, str] = {}  # task -> the clause that asked for it
    floors: list[tuple[int, str]] = []  # lower bounds on parameters: only checked against the limit
    for clause in (c.strip() for c in re.split(r"[;\n]|,\s+|\.\s+|\s+and\s+|\s+with\s+", text)):
        if not clause:
            continue
        low = clause.lower()
        understood = False
        for kind, pattern in _UNSUPPORTED.items():
            if re.search(pattern, low):
                raise SpecError(f'"{clause}" asks for {kind}: {SUPPORTED}')
        for m in re.finditer(rf"\b{_ERRORS}(?![\w²])\s*(?:of\s+)?({_UPPER}|{_LOWER})\s*(\d+(?:\.\d+)?)", low):
            field = (
                "target_r2"
                if m.group(1) in ("r2", "r²", "r-squared", "r squared")
                else _ERROR_FIELD[m.group(1)]
            )
            if (field == "target_r2") != bool(re.fullmatch(_LOWER, m.group(2))):
                continue  # "MAE above 5" or "R² under 0.5" is not a target
            limits.setdefault(field, {}).setdefault(float(m.group(3)), clause)
            tasks.setdefault("regression", clause)
            understood = True
        if re.search(_REGRESSION, low):
            tasks.setdefault("regression", clause)
            understood = True
        if re.search(_CLASSIFICATION, low):
            tasks.setdefault("classification", clause)
        if m := re.search(
            rf"\b(\d+|{'|'.join(_WORDS)})\s+(?:classes|categories|labels|digits classes)\b", low
        ):
            found["num_classes"] = int(_WORDS.get(m.group(1), m.group(1)))
            understood = True
        for value in _param_limits(low):
            limits.setdefault("max_params", {}).setdefault(value, clause)
            understood = True
        for m in re.finditer(rf"{_UPPER}\s*{_BYTES}", low):
            size = float(m.group(1)) * _BYTE_SCALE[m.group(2)]
            limits.setdefault("max_params", {}).setdefault(int(size // BYTES_PER_PARAM), clause)
            hints.append(f"{m.group(1)} {m.group(2).upper()} of float32 weights")
            understood = True
        if re.search(_PARAMS, low):
            floors.extend((int(_number(m.group(1), m.group(2))), clause) for m in _bare(_LOWER, low))
        for m in re.finditer(rf"{_UPPER}\s*(\d+(?:\.\d+)?)\s*({_FLOPS})", low):
            flops = int(float(m.group(1)) * _flops_unit(m.group(2)))
            if "mac" in m.group(2) or "multiply" in m.group(2):
                flops *= 2
            limits.setdefault("max_flops", {}).setdefault(flops, clause)
            understood = True
        if (m := re.search(rf"{_UPPER}\s*{_TIME}", low)) or (
            re.search(r"latency|inference|per (?:sample|image|input)|\bon (?:the )?[cg]pu", low)
            and (m := re.search(_TIME, low))
        ):
            unit = m.group(2).rstrip("s") if m.group(2) not in ("s", "ms", "us", "µs") else m.group(2)
            unit = {"millisecond": "ms", "microsecond": "us", "second": "s"}.get(unit, unit)
            limits.setdefault("max_latency_ms", {}).setdefault(float(m.group(1)) * _TIME_SCALE[unit], clause)
            understood = True
        for word, target in _HINTS.items():
            if re.search(rf"\b{word}\b", low):
                hints.append(word)
                found.setdefault("target_params", target)
                understood = True
        if re.search(r"\b(fast|quick|low[- ]latency|real[- ]time)\b", low):
            hints.append("fast")
            found.setdefault("target_latency_ms", 1.0)
            understood = True
        if m := re.search(
            r"\b(latency|speed|inference time|size|parameters|params|model size)\b.*\bmatters? more"
            r"|\bprioriti[sz]e (latency|speed|size)",
            low,
        ):
            hints.append(
                "latency-first"
                if (m.group(1) or m.group(2)) in ("latency", "speed", "inference time")
                else "size-first"
            )
            found["reward_alpha"] = found["reward_beta"] = -0.3
            understood = True
        if re.search(r"\b(classif\w*|recogni[sz]e|categori[sz]e|predict the (?:class|label)|digits?)\b", low):
            understood = True
        if re.search(r"\bon (?:the )?(cpu|gpu)\b|\bcpu\b", low) and not understood:
            understood = True
        if not understood:
            notes.append(clause)
    if len(tasks) > 1:
        raise SpecError(
            f'conflicting tasks: "{tasks["classification"]}" asks for classification and '
            f'"{tasks["regression"]}" for regression; keep one of them'
        )
    if tasks:
        found["task"] = next(iter(tasks))
    found.update(_one_limit_each(limits, floors))
    return TaskSpec(**found, hints=tuple(dict.fromkeys(hints)), notes=tuple(notes))


def _bare(bound: str, low: str):
    """Numbers after a bound word with no unit of another kind (in a clause that names parameters)."""
    return re.finditer(rf"{bound}\s*{_PLAIN_NUM}", low)


def _param_limits(low: str) -> set[int]:
    """Every upper limit on parameters in a clause: "under 20k parameters", "params <= 1M",
    "a 3k-parameter cap", "under 1k but at least 1M params" (the unit named once for both)."""
    patterns = [
        rf"{_PARAMS}\s*(?:count\s*)?(?:{_UPPER}|:)\s*{_PLAIN_NUM}",
        rf"{_PARAMS}\s*(?:cap|limit|budget|ceiling)\s*(?:of|:)?\s*{_PLAIN_NUM}",
        rf"{_NUM}[\s-]*param(?:eter)?s?[\s-]*(?:cap|limit|budget|ceiling|max(?:imum)?)\b",
        rf"(?:cap|limit|budget|ceiling)\s+of\s+{_NUM}\s*{_PARAMS}",
    ]
    found = {int(_number(m.group(1), m.group(2))) for p in patterns for m in re.finditer(p, low)}
    if re.search(_PARAMS, low):
        found |= {int(_number(m.group(1), m.group(2))) for m in _bare(_UPPER, low)}
    return found


_LIMIT_NAMES = {
    "max_params": "parameter limits",
    "max_latency_ms": "latency limits",
    "max_flops": "FLOP limits",
    "target_mae": "MAE targets",
    "target_rmse": "RMSE targets",
    "target_r2": "R² targets",
}


def _shown(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _one_limit_each(limits: dict[str, dict[float, str]], floors: list[tuple[int, str]]) -> dict:
    """One value per limit; two different values, or a lower bound above the limit, name both clauses."""
    chosen = {}
    for field, values in limits.items():
        if len(values) > 1:
            (a, first), (b, second) = list(values.items())[:2]
            raise SpecError(
                f'conflicting {_LIMIT_NAMES[field]}: "{first}" says {_shown(a)} and "{second}" says {_shown(b)}; '
                "keep one of them"
            )
        chosen[field] = next(iter(values))
    for floor, clause in floors:
        limit = chosen.get("max_params")
        if limit is not None and floor > limit:
            source = limits["max_params"][limit]
            raise SpecError(
                f'conflicting parameter bounds: "{clause}" asks for at least {floor:,} but "{source}" allows '
                f"at most {limit:,}"
            )
    if "max_params" in chosen:
        chosen["max_params"] = int(chosen["max_params"])
    return chosen
