"""The rule reader: plain-English requirements to a TaskSpec.

Every rule is a pattern over the whole text; what a rule reads is marked as read. Then the text is cut
into clauses: a clause nothing read is listed as not understood, and so is every number no rule read, so
no phrase and no number is dropped without a line saying so. Two different limits of one kind in one
text are an error; a refinement (after ``REFINED``) replaces what it sets.
"""

from __future__ import annotations

import re

from llmnas.task.goals import floors, merge_orders, priorities, tolerance
from llmnas.task.phrases import FLAGS, NUMBER, Reading, clauses, each
from llmnas.task.spec import BYTES_PER_PARAM, SpecError, TaskSpec
from llmnas.task.units import bare_params, flops, latency, params, sizes

REFINED = "\nRefined:\n"  # joins a refinement's words to the requirements so far
SUPPORTED = "llmnas searches classification (one class per sample) and regression (one number per sample)"

_TASK_WORDS = (
    r"\b(?:classif\w*|recogni[sz]\w*|categori[sz]\w*|predict\w*|forecast\w*|estimat\w*|detect\w*|identif\w*"
    r"|distinguish\w*|tell (?:apart|whether|if|which)|label\w*|sort\w*|tag\w*|diagnos\w*)"
)
_CLASS_NOUNS = (
    r"species|class(?:es)?|label|category|categories|type|kind|breed|genre|variety|digit|letter|gesture|activity"
    r"|disease|diagnosis|sentiment|emotion|language|speaker|word|keyword|fault|defect|condition|outcome|gender|grade"
)
_QUANTITY = (
    r"price|value|amount|cost|age|temperature|score|count|quantity|progression|level|demand|sales|revenue|yield"
    r"|salary|income|duration|weight|height|length|energy|load|consumption|rating|number of \w+|concentration"
    r"|pressure|speed|distance|volume|power|output|stock|rent|time|life(?:time|span)?|mass|size|area|depth"
)
_UNSUPPORTED = {
    "object detection": r"\bobject detection\b|\bbounding box(?:es)?\b|\bdetect\w*\s+(?:the\s+|all\s+)?objects?\b"
    r"|\b(?:detect|find|locate|locali[sz]e)\w*\s+and\s+box\b|\bdraw (?:a )?box(?:es)? around\b",
    "segmentation": r"\b(?:semantic |instance |image )?segmentation\b|\bsegment (?:the |each |every |all )?"
    r"(?:[\w-]+\s+)?(?:image|pixel|object|region|area|organ|tumou?r|lesion)s?\b|\bpixel[- ]?(?:wise|level) (?:masks?|labels?)",
    "generation": r"\b(?:text|image|sequence) generation\b|\bgenerative model\b"
    r"|\bgenerat\w*\s+(?:new\s+|synthetic\s+|realistic\s+|fake\s+)?(?:[\w-]+\s+)?(?:text|images?|sentences?|captions?"
    r"|music|audio|code|data|samples|traces|signals|sequences|faces|speech)\b",
    "captioning": r"\bcaption(?:s|ing)?\b",
    "translation": r"\btranslat(?:e|es|ion|ing)\b",
}
_MODALITY = {
    "sequence": r"time[- ]?series|signals?|sequences?|sequential|ecg|eeg|emg|waveforms?|audio|sound|speech|accelerometer"
    r"|gyroscope|imu|vibration|sensor (?:readings|streams?|traces?)|1-?d\b|one-dimensional|spectra|spectrum|traces",
    "image": r"images?|photos?|photographs?|pictures?|pixels?|grayscale|greyscale|rgb|frames? of video|scans?|x-rays?"
    r"|2-?d\b|handwritten",
    "tabular": r"tables?|tabular|csv|spreadsheets?|columns|rows|records|measurements|attributes|features",
}
_MCU = (
    r"micro-?controllers?|mcus?|arduino(?:\s+(?:nano|uno|mega|micro|portenta|nicla)(?:\s+\d+)?(?:\s+(?:ble|iot|sense|every))*)?"
    r"|esp32[\w-]*|esp8266|cortex-?m\d*\w*|stm32\w*|nrf5\d\w*|tinyml|attiny\w*"
)
_DEVICE = r"(?:smart)?phones?|mobile|android|ios|iphone|raspberry[- ]?pi\s*\d?|jetson\w*|edge(?:[- ]devices?)?|browser|wearables?"
_FILLER = (
    r"\b(?:cpu|gpu|on (?:the )?(?:cpu|gpu)|single[- ]core|one core|model|network|net|neural|deep|data(?:set)?|please|"
    r"digits?|mnist\w*|cifar\w*|handwritten|inputs?|outputs?|samples?|examples?|classes|use|train\w*|build|need|"
    r"want|make|runs?|running|deploy\w*|production|device|target|the|a|an|it)\b"
)


def _unsupported(r: Reading) -> None:
    for kind, pattern in _UNSUPPORTED.items():
        if m := re.search(pattern, r.text, FLAGS):
            raise SpecError(f'"{m.group(0)}" asks for {kind}: {SUPPORTED}')


def _task(r: Reading) -> None:
    regression = (
        rf"\bregress\w*|\b(?:predict|estimat|forecast)\w*\s+(?:the\s+|a\s+|an\s+|how\s+(?:much|many|long)\s+)?"
        rf"(?:[\w'’-]+\s+){{0,3}}?(?:{_QUANTITY})s?\b|\b(?:continuous|numeric|numerical|real-valued) (?:target|output|value|label)s?"
    )
    classification = (
        rf"\b(?:classif\w*|recogni[sz]e|categori[sz]e|binary|multi-?class|yes/no|yes or no|which of (?:the )?\d+)\b|\b(?:predict|identify|determine|detect)\w*"
        rf"\s+(?:the\s+|a\s+|an\s+|which\s+|its\s+)?(?:[\w-]+\s+){{0,2}}?(?:{_CLASS_NOUNS})\b|\b(?:detect|tell|decide|determine|predict)\w*\s+(?:whether|if)\b"
    )
    for kind, pattern in (("regression", regression), ("classification", classification)):
        for m in re.finditer(pattern, r.text, FLAGS):
            if r.free(m):  # "predict disease progression" is read once, as regression
                r.mark(m)
                r.tasks.setdefault(kind, r.clause(m))
    classes = (
        r"(?:classes|categories|labels|types|kinds|species|outcomes|groups|emotions|diseases|activities|tasks|gestures"
        r"|faults|conditions|keywords|commands|words|letters|breeds|genres|moods|actions|states|grades|defects|sounds"
        r"|languages|speakers|postures|movements|events)"
    )
    words = {
        "two": 2,
        "three": 3,
        "four": 4,
        "five": 5,
        "six": 6,
        "seven": 7,
        "eight": 8,
        "nine": 9,
        "ten": 10,
    }
    if m := re.search(
        rf"\b(\d+|{'|'.join(words)})(?:\s+(?!classes)[a-z-]+){{0,2}}?\s+{classes}\b|\b(\d+)[- ](?:class|way)\b",
        r.text,
        FLAGS,
    ):
        r.mark(m)
        value = m.group(1) or m.group(2)
        r.found["num_classes"] = int(words.get(value.lower(), value))
        r.tasks.setdefault("classification", r.clause(m))
    elif m := re.search(
        r"\b(?:binary|yes/no|yes or no|two-class)\b|\b(?:detect|tell|decide|determine|predict)\w*\s+(?:whether|if)\b",
        r.text,
        FLAGS,
    ):
        r.found["num_classes"] = 2


def _modality(r: Reading) -> None:
    for name, pattern in _MODALITY.items():
        if m := re.search(rf"\b(?:{pattern})\b", r.text, FLAGS):
            r.modalities.setdefault(name, r.mark(m))
    for m in re.finditer(r"\b(\d+)\s*[x×]\s*(\d+)(?:\s*[x×]\s*(\d+))?\b", r.text, FLAGS):
        r.mark(m)
        r.found.setdefault("input_shape", tuple(int(g) for g in m.groups() if g))
        r.modalities.setdefault("image", m.group(0))
    each(
        r,
        r"\b\d+[- ]?(?:time[- ]?steps?|steps?|samples? long|points?|channels?|leads?|features?|columns?|pixels?|bands?)\b",
        lambda m: r.assumptions.append(f'"{r.mark(m)}": the input\'s shape is taken from --data'),
    )


def _hardware(r: Reading) -> None:
    if m := re.search(rf"\b(?:{_MCU})\b", r.text, FLAGS):
        r.mark(m)
        if "max_params" in r.limits or "max_bytes" in r.limits:
            r.assumptions.append(f"{m.group(0)}: the size limit stated is used as it is")
        else:
            r.limit("max_bytes", 256 * 1024, m)
            r.limit("max_params", 256 * 1024 // BYTES_PER_PARAM, m)
            r.assumptions.append(
                f"{m.group(0)}: assumed 256 KiB of flash for float32 weights (65,536 parameters); "
                "state a size to change it, e.g. 'fits in 64 KB'"
            )
    if m := re.search(rf"\b(?:{_DEVICE})\b", r.text, FLAGS):
        r.mark(m)
        r.assumptions.append(
            f"{m.group(0)}: latency is measured on this machine's CPU, not on the device; "
            "state a limit in ms as measured here"
        )


# ------------------------------------------------------------------------------------------- the reader


_RULES = (
    _unsupported,
    tolerance,
    sizes,
    flops,
    latency,
    params,
    bare_params,
    floors,
    priorities,
    _task,
    _modality,
    _hardware,
)


def _unread(r: Reading) -> None:
    """A clause no rule read, and a number no rule read, are listed as not understood."""
    for start, end in clauses(r.text):
        clause = r.text[start:end].strip()
        inside = [(max(s, start), min(e, end)) for s, e in r.read if s < end and start < e]
        for m in re.finditer(rf"(?<!/){NUMBER}(?:\s*(?:k|m|%))?(?![\w\-/])", clause, FLAGS):
            a = start + (len(r.text[start:end]) - len(r.text[start:end].lstrip())) + m.start()
            if not any(s <= a < e for s, e in inside):
                r.not_understood.append(f'"{m.group(0)}" in "{clause}"')
        if inside:
            continue
        rest = re.sub(rf"{_FILLER}|{_TASK_WORDS}|[^\w]+", " ", clause, flags=FLAGS).strip()
        if re.search(rf"{_TASK_WORDS}", clause, FLAGS) and not re.search(r"\d", clause):
            continue  # a task statement the data settles ("predict the outcome from the readings")
        if rest and not any(clause in line for line in r.not_understood):
            r.not_understood.append(clause)


def _read(text: str) -> TaskSpec:
    if not text or not text.strip():
        raise SpecError('requirements text is empty: say what the model should do, e.g. "classify digits"')
    r = Reading(text.strip())
    for rule in _RULES:
        rule(r)
    _unread(r)
    found = dict(r.found)
    if len(r.tasks) > 1:
        raise SpecError(
            f'conflicting tasks: "{r.tasks["classification"]}" asks for classification and '
            f'"{r.tasks["regression"]}" for regression; keep one of them'
        )
    if r.tasks:
        found["task"] = next(iter(r.tasks))
    if len(r.modalities) > 1:
        said = " and ".join(f'"{phrase}" ({name})' for name, phrase in r.modalities.items())
        r.contradictions.append(f"{said} name different kinds of input: the data decides")
    elif r.modalities:
        found["modality"] = next(iter(r.modalities))
    if "input_shape" in found and found.get("modality", "image") != "image":
        del found["input_shape"]
    found.update(_one_limit_each(r.limits, r.size_floors))
    r.not_understood += [
        f"{phrase} (a lower bound on size is not searched for)" for _, phrase in r.size_floors
    ]
    found["floors"] = {name: _one(name, values) for name, values in r.floors.items()}
    if order := merge_orders(r):
        found["priorities"] = order
    if order and order[0] in ("size", "latency", "flops"):
        found["reward_alpha"] = found["reward_beta"] = -0.3  # the cost stated first weighs as MnasNet's soft
    return TaskSpec(
        text=r.text,
        **found,
        hints=tuple(dict.fromkeys(r.hints)),
        assumptions=tuple(dict.fromkeys(r.assumptions)),
        not_understood=tuple(dict.fromkeys(r.not_understood)),
        contradictions=tuple(dict.fromkeys(r.contradictions)),
    )


_NAMES = {
    "max_params": "parameter limits",
    "max_bytes": "size limits",
    "max_latency_ms": "latency limits",
    "max_flops": "FLOP limits",
    "max_memory_mb": "memory limits",
}


def _shown(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _one(name: str, values: dict[float, str]) -> float:
    if len(values) > 1:
        (a, first), (b, second) = list(values.items())[:2]
        raise SpecError(
            f'conflicting {_NAMES.get(name, name + " floors")}: "{first}" says {_shown(a)} and "{second}" says '
            f"{_shown(b)}; keep one of them"
        )
    return next(iter(values))


def _one_limit_each(limits: dict[str, dict[float, str]], floors: list[tuple[int, str]]) -> dict:
    """One value per limit; two different values, or a lower bound above the limit, name both phrases."""
    chosen = {name: _one(name, values) for name, values in limits.items()}
    for floor, phrase in floors:
        limit = chosen.get("max_params")
        if limit is not None and floor > limit:
            source = limits["max_params"][limit]
            raise SpecError(
                f'conflicting parameter bounds: "{phrase}" asks for at least {floor:,} but "{source}" allows '
                f"at most {int(limit):,}"
            )
    for name in ("max_params", "max_bytes", "max_flops"):
        if name in chosen:
            chosen[name] = max(1, int(chosen[name]))
    return chosen


# ------------------------------------------------------------------------------------------- entry points


def parse_requirements(text: str) -> TaskSpec:
    """The rule reader. A refinement (after ``REFINED``) replaces the limits, floors, targets and
    priorities it states and keeps the rest; within one text two values of one limit are an error."""
    first, *refinements = text.split(REFINED)
    spec = _read(first)
    for more in refinements:
        later = _read(more)
        changed = later.model_fields_set - {
            "text",
            "hints",
            "assumptions",
            "not_understood",
            "contradictions",
        }
        update = {k: getattr(later, k) for k in changed if k != "floors"}
        if "max_params" in changed and "max_bytes" not in changed:
            update["max_bytes"] = None  # a new parameter limit replaces a size in bytes
        update["floors"] = {**spec.floors, **later.floors}
        if "priorities" in changed and "reward_alpha" not in changed:
            update["reward_alpha"] = update["reward_beta"] = TaskSpec.model_fields["reward_alpha"].default
        for name in ("hints", "assumptions", "not_understood", "contradictions"):
            update[name] = tuple(dict.fromkeys(getattr(spec, name) + getattr(later, name)))
        spec = spec.model_copy(update=update)
    if spec.max_params and spec.target_params and spec.target_params > spec.max_params:
        spec = spec.model_copy(update={"target_params": spec.max_params})
    return spec.model_copy(update={"text": text.strip()})


def asked_task(text: str) -> str | None:
    """The task the requirements name (classification or regression), or None when they name none."""
    first = text.split(REFINED)[0]  # a refinement cannot change how the data is read
    if not first.strip():
        return None
    spec = parse_requirements(first)
    return spec.task if "task" in spec.model_fields_set else None


def asked_modality(text: str) -> str | None:
    """The kind of input the requirements name ("time series" -> sequence), or None."""
    first = text.split(REFINED)[0]
    if not first.strip():
        return None
    spec = parse_requirements(first)
    return spec.modality if "modality" in spec.model_fields_set else None
