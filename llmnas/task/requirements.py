"""The rule reader: plain-English requirements to a TaskSpec.

Every rule is a pattern over the whole text; what a rule reads is marked as read. Then the text is cut
into clauses: a clause nothing read is listed as not understood, and so is every number no rule read, so
no phrase and no number is dropped without a line saying so. Two different limits of one kind in one
text are an error; a refinement (after ``REFINED``) replaces what it sets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from llmnas.task.spec import BYTES_PER_PARAM, REGRESSION_FLOORS, SpecError, TaskSpec

REFINED = "\nRefined:\n"  # joins a refinement's words to the requirements so far
SUPPORTED = "llmnas searches classification (one class per sample) and regression (one number per sample)"

_F = re.IGNORECASE
_SUFFIX = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "million": 1e6,
    "mio": 1e6,
    "b": 1e9,
    "billion": 1e9,
    "g": 1e9,
}
_NUM = r"(\d+(?:,\d{3})+|\d+(?:\.\d+)?(?:e[+-]?\d+)?)"  # 20,000  1.5  3e4
NUM = rf"{_NUM}\s*(k|thousand|million|mio|m|billion|b)?(?![a-z])"
_UPPER = (
    r"(?:under|below|beneath|less than|fewer than|lower than|smaller than|at most|no more than|not more than"
    r"|not exceed(?:ing)?|no (?:bigger|larger|greater|higher|slower) than|max(?:imum|imal)?(?:\s+of)?"
    r"|within|up to|cap(?:ped)? at|limit(?:ed)? to|budget of|<=?|≤|sub-?|fits? (?:in(?:to)?|within|on)"
    r"|must fit (?:in(?:to)?|within|on)|should fit (?:in(?:to)?|within|on)|fit (?:in(?:to)?|within|on))"
)
_LOWER = r"(?:at least|more than|over|above|greater than|higher than|min(?:imum)?(?:\s+of)?|>=?|≥|no less than|exceed(?:s|ing)?)"
_APPROX = r"(?:about|around|roughly|approximately|approx\.?|~|circa|close to|on the order of|in the range of)"
_PARAMS = r"(?:trainable\s+)?(?:param(?:eter)?s?|weights)\b"
_BYTES = r"(kib|kb|kbytes?|kilobytes?|mib|mb|mbytes?|megabytes?|gib|gb|gigabytes?|bytes?)\b"
_BYTE_SCALE = {"k": 1e3, "m": 1e6, "g": 1e9}
_TIME = r"(ms|msec|millisec(?:ond)?s?|us|µs|μs|microsec(?:ond)?s?|s|secs?|seconds?)\b"
_FLOPS = (
    r"(?:(k|m|g|t)(?:flops?|macs?)|(?:flops?|macs?|mult(?:iply)?[- ]?(?:adds?|accumulates?|accumulations?)"
    r"|multiplications?))\b"
)
_RAM = r"(?:of\s+)?(?:ram|sram|dram|memory|heap)\b"
_METRIC = (
    r"(balanced[- ]accuracy|(?:macro[- ]|weighted[- ])?f1(?:[- ]score)?|top-?1(?:\s+accuracy)?|accuracy|accurate|acc"
    r"|error[- ]rate|misclassification(?: rate)?|errors?|mean absolute error|mae|root mean squared? error|rmse"
    r"|r2|r²|r\^2|r-squared|r squared|coefficient of determination)"
)
_PCT = r"(\d+(?:\.\d+)?)\s*(%|percent|pct|per cent|points?)?"
_OBJ = {
    "quality": r"accuracy|accurate|quality|performance|precision|f1|predictive power|correctness",
    "size": r"(?:model\s+)?size|small(?:er|ness)?|parameters?|params|(?:memory\s+)?footprint|compactness|weights",
    "latency": r"latency|speed|fast(?:er)?|inference(?:\s+(?:time|speed))?|response time|runtime|throughput",
    "flops": r"flops|compute|macs|operations",
}
_ANY_OBJ = "|".join(f"(?:{p})" for p in _OBJ.values())
_TASK_WORDS = (
    r"\b(?:classif\w*|recogni[sz]\w*|categori[sz]\w*|predict\w*|forecast\w*|estimat\w*|detect\w*|identif\w*"
    r"|distinguish\w*|tell (?:apart|whether|if|which)|label\w*|sort\w*|tag\w*|model\w*|diagnos\w*)"
)
_CLASS_NOUNS = (
    r"species|class(?:es)?|label|category|categories|type|kind|breed|genre|variety|digit|letter|gesture|activity"
    r"|disease|diagnosis|sentiment|emotion|language|speaker|word|keyword|fault|defect|condition|outcome|gender|grade"
)
_QUANTITY = (
    r"price|value|amount|cost|age|temperature|score|count|quantity|progression|level|demand|sales|revenue|yield"
    r"|salary|income|duration|weight|height|length|energy|load|consumption|rating|number of \w+|concentration"
    r"|pressure|speed|distance|volume|power|output|stock|rent|time|life(?:time|span)?"
)
_UNSUPPORTED = {
    "object detection": r"\bobject detection\b|\bbounding box(?:es)?\b|\bdetect\w*\s+(?:the\s+|all\s+)?objects?\b",
    "segmentation": r"\b(?:semantic |instance |image )?segmentation\b|\bsegment (?:the |each )?(?:image|pixel|object)",
    "generation": r"\b(?:text|image|sequence) generation\b|\bgenerative model\b"
    r"|\bgenerat\w*\s+(?:new\s+)?(?:text|images?|sentences?|captions?|music|audio|code)\b",
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
_MCU = r"micro-?controllers?|mcus?|arduino\w*|esp32\w*|esp8266|cortex-?m\d*\w*|stm32\w*|nrf5\d\w*|tinyml|attiny\w*"
_DEVICE = r"(?:smart)?phones?|mobile|android|ios|iphone|raspberry[- ]?pi\s*\d?|jetson\w*|edge(?:[- ]devices?)?|browser|wearables?"
_FILLER = (
    r"\b(?:cpu|gpu|on (?:the )?(?:cpu|gpu)|single[- ]core|one core|model|network|net|neural|deep|data(?:set)?|please|"
    r"digits?|mnist\w*|cifar\w*|handwritten|inputs?|outputs?|samples?|examples?|classes|use|train\w*|build|need|"
    r"want|make|runs?|running|deploy\w*|production|device|target|the|a|an|it)\b"
)


@dataclass
class _Reading:
    """What the rules have read so far from one text."""

    text: str
    read: list[tuple[int, int]] = field(default_factory=list)  # spans rules read
    limits: dict[str, dict[float, str]] = field(default_factory=dict)  # field -> {value: phrase}
    floors: dict[str, dict[float, str]] = field(default_factory=dict)
    found: dict = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)
    modalities: dict[str, str] = field(default_factory=dict)
    orders: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # stated priority orders
    size_floors: list[tuple[int, str]] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)

    def free(self, m: re.Match) -> bool:
        """True when no earlier rule read any of this match."""
        a, b = m.span()
        return not any(a < e and s < b for s, e in self.read)

    def mark(self, m: re.Match) -> str:
        self.read.append(m.span())
        return m.group(0).strip()

    def clause(self, m: re.Match) -> str:
        """The clause the match starts in."""
        return next(
            (self.text[a:b].strip() for a, b in _clauses(self.text) if a <= m.start() < b), m.group(0)
        )

    def limit(self, name: str, value: float, m: re.Match) -> None:
        self.limits.setdefault(name, {}).setdefault(value, self.mark(m))

    def floor(self, name: str, value: float, m: re.Match) -> None:
        self.floors.setdefault(name, {}).setdefault(value, self.mark(m))
        if name in REGRESSION_FLOORS:
            self.tasks.setdefault("regression", self.clause(m))


def number(value: str, suffix: str | None = None) -> float:
    """ "20,000" -> 20000, ("1.5", "M") -> 1.5e6, "3e4" -> 30000."""
    return float(value.replace(",", "")) * _SUFFIX.get((suffix or "").lower(), 1)


def _each(r: _Reading, pattern: str, handle: Callable[[re.Match], None]) -> None:
    for m in re.finditer(pattern, r.text, _F):
        if r.free(m):
            handle(m)


# ------------------------------------------------------------------------------------------- the rules


def _unsupported(r: _Reading) -> None:
    for kind, pattern in _UNSUPPORTED.items():
        if m := re.search(pattern, r.text, _F):
            raise SpecError(f'"{m.group(0)}" asks for {kind}: {SUPPORTED}')


def _bytes_of(value: str, unit: str) -> float:
    unit = unit.lower()
    if unit.startswith("byte"):
        return float(value)
    scale = 1024 ** ("kmg".index(unit[0]) + 1) if "i" in unit[:3] and unit[1] == "i" else _BYTE_SCALE[unit[0]]
    return number(value) * scale


def _sizes(r: _Reading) -> None:
    """Model size in bytes (parameters at float32) and memory (RAM) limits."""
    mib = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}

    def memory(m: re.Match) -> None:
        unit = m.group("unit").lower()
        value = (
            number(m.group("n")) / 2**20 if unit.startswith("byte") else number(m.group("n")) * mib[unit[0]]
        )
        r.limit("max_memory_mb", value, m)

    _each(r, rf"(?:{_UPPER}\s*)?(?P<n>{_NUM})\s*(?P<unit>{_BYTES[1:-3]})\b\s*{_RAM}", memory)
    _each(
        r,
        rf"(?:ram|memory|heap)(?:\s+(?:usage|budget|use|limit|consumption))?\s*(?:{_UPPER}|:|of)\s*(?P<n>{_NUM})\s*(?P<unit>{_BYTES[1:-3]})\b",
        memory,
    )

    def model_bytes(m: re.Match) -> None:
        if re.match(_LOWER, m.group(0), _F):
            return
        size = int(_bytes_of(m.group("n"), m.group("unit")))
        r.limit("max_bytes", size, m)
        r.limit("max_params", size // BYTES_PER_PARAM, m)
        r.hints.append(f"{m.group('n')} {m.group('unit')} of float32 weights")

    _each(r, rf"(?:{_LOWER}\s*|{_UPPER}\s*)?(?P<n>{_NUM})\s*(?P<unit>{_BYTES[1:-3]})\b", model_bytes)
    if m := re.search(
        r"\b(int8|8[- ]bit|quanti[sz]\w*|int4|4[- ]bit|fp16|float16|half[- ]precision|16[- ]bit)\b",
        r.text,
        _F,
    ):
        r.mark(m)
        r.assumptions.append(
            f"{m.group(0)}: llmnas trains and exports float32 weights; sizes count {BYTES_PER_PARAM} bytes per "
            "parameter (quantise the export yourself to shrink it)"
        )


def _params(r: _Reading) -> None:
    def limit(m: re.Match) -> None:
        r.limit("max_params", int(number(m.group("n"), m.group("s"))), m)

    n = rf"(?P<n>{_NUM})\s*(?P<s>k|thousand|million|mio|m|billion|b)?(?![a-z])"
    for pattern in (
        rf"{_UPPER}\s*{n}[\s-]*{_PARAMS}",
        rf"{_PARAMS}\s*(?:count\s*)?(?:{_UPPER}|:|=|of at most)\s*{n}",
        rf"{_PARAMS}\s*(?:cap|limit|budget|ceiling)\s*(?:of|:|at|is)?\s*{n}",
        rf"{n}[\s-]*param(?:eter)?s?[\s-]*(?:cap|limit|budget|ceiling|max(?:imum)?)\b",
        rf"(?:cap|limit|budget|ceiling)\s+of\s+{n}\s*{_PARAMS}",
        rf"{n}\s*{_PARAMS}\s*(?:or (?:less|fewer|below|under)|max(?:imum)?|at most|tops|at the most)",
    ):
        _each(r, pattern, limit)

    def target(m: re.Match) -> None:
        r.found["target_params"] = int(number(m.group("n"), m.group("s")))
        r.mark(m)

    _each(r, rf"{_APPROX}\s*{n}[\s-]*{_PARAMS}", target)
    _each(r, rf"\ban?\s+{n}[\s-]*param(?:eter)?s?\s+(?:model|network|net|cnn|mlp|classifier)", target)

    def at_least(m: re.Match) -> None:
        r.size_floors.append((int(number(m.group("n"), m.group("s"))), r.mark(m)))

    _each(r, rf"{_LOWER}\s*{n}[\s-]*{_PARAMS}", at_least)


def _bare_params(r: _Reading) -> None:
    """ "under 1k but at least 1M params": bounds with no unit, in a clause that names parameters."""
    unit = r"(?!\s*(?:ms|us|µs|s\b|sec|%|[kmgt]?flops|[kmgt]?macs|[kmg]i?b\b|bytes?|x\s*\d|hz|fps|classes|points?))"
    for start, end in _clauses(r.text, words=False):
        clause = r.text[start:end]
        if not re.search(_PARAMS, clause, _F):
            continue
        for bound, upper in ((_UPPER, True), (_LOWER, False)):
            for m in re.finditer(
                rf"{bound}\s*{_NUM}\s*(k|thousand|million|mio|m|billion|b)?(?![\w.]){unit}", clause, _F
            ):
                span = (start + m.start(), start + m.end())
                if any(span[0] < e and s < span[1] for s, e in r.read):
                    continue
                r.read.append(span)
                value = int(number(m.group(1), m.group(2)))
                if upper:
                    r.limits.setdefault("max_params", {}).setdefault(value, m.group(0).strip())
                else:
                    r.size_floors.append((value, m.group(0).strip()))


def _flops(r: _Reading) -> None:
    def limit(m: re.Match) -> None:
        if m.group("low"):
            r.not_understood.append(f"{m.group(0).strip()} (a lower bound on FLOPs is not searched for)")
            r.mark(m)
            return
        flops = number(m.group("n"), m.group("s")) * {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}.get(
            (m.group("p") or "").lower(), 1
        )
        if re.search(r"mac|mult|accumul", m.group("u"), _F) and not re.search(
            "multiplications", m.group("u"), _F
        ):
            flops *= 2  # a multiply-add is two floating-point operations
        r.limit("max_flops", int(flops), m)

    n = rf"(?P<n>{_NUM})\s*(?P<s>k|thousand|million|mio|m|billion|b)?\s*"
    unit = rf"(?P<u>{_FLOPS.replace('(k|m|g|t)', '(?P<p>k|m|g|t)')})"
    _each(r, rf"(?:(?P<low>{_LOWER})\s*|(?:{_UPPER}|{_APPROX})\s*)?{n}{unit}", limit)
    unit2 = unit.replace("?P<u>", "?P<u2>").replace("?P<p>", "?P<p2>")

    def reversed_(m: re.Match) -> None:
        flops = number(m.group("n"), m.group("s")) * {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}.get(
            (m.group("p2") or "").lower(), 1
        )
        if re.search(r"mac|mult|accumul", m.group("u2"), _F):
            flops *= 2
        r.limit("max_flops", int(flops), m)

    _each(
        r, rf"{unit2}\s*(?:per (?:sample|inference|image|input)\s*)?(?:{_UPPER}|:)\s*{n}(?![\w])", reversed_
    )


def _ms(value: str, unit: str) -> float:
    u = unit.lower()
    if u.startswith(("us", "µs", "μs", "micro")):
        return float(value) / 1000
    if u.startswith(("ms", "msec", "milli")):
        return float(value)
    return float(value) * 1000


_LATENCY_CONTEXT = (
    r"latenc\w*|inference|per (?:sample|image|input|prediction|example|frame|window|call|query|request)|predict\w*"
    r"|respon\w*|forward pass|run\w*|on (?:the |a |one )?(?:cpu|gpu)|classif\w*|process\w*|real[- ]time|speed"
)


def _latency(r: _Reading) -> None:
    def limit(m: re.Match) -> None:
        ms = _ms(m.group("n"), m.group("u"))
        if m.group("approx"):
            r.found["target_latency_ms"] = ms
            r.mark(m)
        else:
            r.limit("max_latency_ms", ms, m)

    time = rf"(?P<n>\d+(?:\.\d+)?)\s*(?P<u>{_TIME[1:-3]})\b"
    _each(r, rf"(?:(?P<approx>{_APPROX})|{_UPPER})\s*{time}", limit)
    for start, end in _clauses(r.text):  # "2 ms on CPU", "latency: 5ms"
        clause = r.text[start:end]
        if not re.search(_LATENCY_CONTEXT, clause, _F):
            continue
        for m in re.finditer(rf"(?P<approx>){time}", clause, _F):
            span = (start + m.start(), start + m.end())
            if not any(span[0] < e and s < span[1] for s, e in r.read) and not re.search(
                rf"{_LOWER}\s*$", clause[: m.start()], _F
            ):
                r.read.append(span)
                r.limits.setdefault("max_latency_ms", {}).setdefault(
                    _ms(m.group("n"), m.group("u")), m.group(0)
                )

    def rate(m: re.Match) -> None:
        per_second = number(m.group("n"), m.group("s")) * (1000 if m.groupdict().get("k") else 1)
        r.limit("max_latency_ms", 1000 / per_second, m)

    n = rf"(?P<n>{_NUM})\s*(?P<s>k|thousand)?\s*"
    things = r"(?:inferences?|predictions?|classifications?|samples?|images?|frames?|queries|requests|windows?|calls|forward passes)"

    def sampled(m: re.Match) -> None:
        r.assumptions.append(f'"{r.mark(m)}" read as the data\'s sampling rate, not as a speed limit')

    _each(
        r,
        rf"(?:sampled|sampling(?: rate| frequency)?|recorded|captured|collected|measured)\s*(?:at|of|:)?\s*{_NUM}\s*k?hz\b",
        sampled,
    )
    _each(r, rf"(?:{_LOWER}\s*)?{n}{things}\s*(?:per|a|each|/)\s*(?:second|sec|s)\b", rate)
    _each(
        r,
        rf"(?:{_LOWER}\s*|at\s+|of\s+)?{n}(?P<k>k)?(?:hz|fps|qps|frames per second|inferences per second)\b",
        rate,
    )


def _floors(r: _Reading) -> None:
    def value_of(pct: str, unit: str | None, metric: str) -> float | None:
        v = float(pct)
        if metric in ("mae", "rmse"):
            return v
        if unit or v > 1:
            v /= 100
        return v if 0 < v <= 1 else None

    def name_of(metric: str) -> str:
        metric = metric.lower().replace("-", " ")
        for name, pattern in (
            ("balanced_accuracy", "balanced"),
            ("f1", "f1"),
            ("error", "error|misclass"),
            ("mae", "mae|absolute"),
            ("rmse", "rmse|root"),
            ("r2", r"r2|r²|r\^2|squared|determination"),
        ):
            if re.search(pattern, metric):
                if name == "error" and re.search("absolute|squared", metric):
                    continue
                return name
        return "accuracy"

    def set_floor(m: re.Match, metric: str, bound: str | None, pct: str, unit: str | None) -> None:
        name = name_of(metric)
        value = value_of(pct, unit, "mae" if name in ("mae", "rmse") else name)
        upper = bool(bound and re.fullmatch(_UPPER, bound.strip(), _F))
        lower = bool(bound and re.fullmatch(_LOWER, bound.strip(), _F))
        if value is None:
            return
        if name == "error":  # an error rate below x is an accuracy of at least 1 - x
            if lower:
                return
            name, value = "accuracy", round(1 - value, 10)
        elif name in ("mae", "rmse"):
            if lower:
                return
        elif upper:
            return
        r.floor(name, value, m)

    bound = rf"(?P<b>{_LOWER}|{_UPPER}|of|:|=|is|should be|must be|needs to be|to be|must reach|reaching|reach|of at least)"
    more = r"(?:\s*(?:\+|or (?:more|better|higher|above|greater|less|lower|below|fewer|under)))?"
    _each(
        r,
        rf"\b{_METRIC}\s*(?:score\s*)?(?:on (?:the )?(?:validation|test|held-out) (?:set|data)\s*)?"
        rf"(?:{bound}\s*)*{_PCT}{more}",
        lambda m: _floor_after(m, set_floor),
    )
    _each(
        r,
        rf"(?P<b2>{_LOWER}|{_UPPER})?\s*{_PCT}\s*(?P<plus>\+|or (?:more|better|higher|above))?\s*"
        rf"(?:(?:validation|test|val|top-?1|classification)\s+)?{_METRIC}",
        lambda m: _floor_before(m, set_floor),
    )

    def bare(m: re.Match) -> None:  # "the smallest model that gets 98%", "while above 90%"
        r.floor("accuracy", float(m.group("v")) / 100, m)

    _each(
        r,
        r"(?:gets?|getting|reach(?:es|ing)?|achiev\w*|hit(?:s|ting)?|scor\w*|above|over|at least|no less than"
        r"|keeps?|stays? above|>=?|≥)\s*(?P<v>\d+(?:\.\d+)?)\s*(?:%|percent)(?!\s*(?:of|smaller|fewer|less|faster))",
        bare,
    )


def _floor_after(m: re.Match, set_floor) -> None:
    """ "accuracy of at least 95%", "F1 >= 0.9", "MAE under 45", "top-1 93% or more"."""
    text = m.group(0)
    metric = re.match(_METRIC, text, _F).group(0)
    tail = text[len(metric) :]
    bounds = re.findall(rf"({_LOWER}|{_UPPER})", tail, _F)
    more = re.search(r"or (more|better|higher|above|greater)|\+", tail, _F)
    less = re.search(r"or (less|lower|below|fewer|under)", tail, _F)
    bound = bounds[-1] if bounds else ("at least" if more else "under" if less else None)
    value = re.search(r"(\d+(?:\.\d+)?)\s*(%|percent|pct|per cent)?", tail)
    if value:
        set_floor(m, metric, bound, value.group(1), value.group(2))


def _floor_before(m: re.Match, set_floor) -> None:
    """ "at least 95% accuracy", "95%+ top-1", "less than 5% error"."""
    text = m.group(0)
    value = re.search(r"(\d+(?:\.\d+)?)\s*(%|percent|pct|per cent)?", text)
    metric = re.search(rf"{_METRIC}$", text, _F).group(0)
    bound = m.group("b2") or ("at least" if m.group("plus") else None)
    if bound is None and not value.group(2) and float(value.group(1)) > 1:
        return  # "10 accuracy" is no floor
    set_floor(m, metric, bound, value.group(1), value.group(2))


def _priorities(r: _Reading) -> None:
    def obj(word: str) -> str:
        for name, pattern in _OBJ.items():
            if re.fullmatch(pattern, word.strip(), _F):
                return name
        raise AssertionError(word)

    def order(*names: str) -> Callable[[re.Match], None]:
        def handle(m: re.Match) -> None:
            r.orders.append(
                (tuple(dict.fromkeys(obj(m.group(n)) if n.startswith("o") else n for n in names)), r.mark(m))
            )

        return handle

    o1, o2, o3, o4 = (rf"(?P<o{i}>{_ANY_OBJ})" for i in (1, 2, 3, 4))
    be = r"(?:matters?|is|are|counts?|weighs?)\s+(?:much\s+|far\s+|a lot\s+|way\s+|slightly\s+)?"
    _each(r, rf"\b{o1}\s+{be}more(?:\s+important)?\s+than\s+{o2}", order("o1", "o2"))
    _each(r, rf"\b{o1}\s+{be}less(?:\s+important)?\s+than\s+{o2}", order("o2", "o1"))
    _each(
        r,
        rf"\b(?:prioriti[sz]e|favou?r|prefer|optimi[sz]e for)\s+{o1}\s+(?:over|above|before|rather than|to)\s+{o2}",
        order("o1", "o2"),
    )
    _each(r, rf"\b{o1}\s+(?:over|before|ahead of|rather than|>)\s+{o2}\b", order("o1", "o2"))
    _each(
        r,
        rf"\b{o1}\s+first(?:[,;]?\s*(?:and\s+)?(?:then|second|followed by|after that)\s+{o2})?"
        rf"(?:[,;]?\s*(?:and\s+)?(?:then|third|followed by)\s+{o3})?",
        lambda m: order(*[n for n in ("o1", "o2", "o3") if m.group(n)])(m),
    )
    _each(
        r,
        rf"\b(?:prioriti[sz]e|favou?r|optimi[sz]e for|focus on)\s+{o1}|\b{o2}\s+(?:matters?|counts?)\s+(?:the\s+)?most"
        rf"|\bmost important(?:\s+(?:is|thing is))?\s+{o3}|\b{o4}\s+is\s+(?:the\s+|our\s+|my\s+)?(?:top |main |first |key )?priority",
        lambda m: order(next(n for n in ("o1", "o2", "o3", "o4") if m.group(n)))(m),
    )
    superlatives = {
        "size": r"as small as (?:possible|we can|you can)|(?:the\s+)?smallest|minimi[sz]e (?:the )?(?:model )?(?:size|parameters?|params|footprint)"
        r"|fewest (?:parameters|params|weights)|as few (?:parameters|params|weights) as possible",
        "latency": r"as fast as (?:possible|we can|you can)|(?:the\s+)?fastest|minimi[sz]e (?:the )?(?:latency|inference time)"
        r"|lowest (?:possible )?latency",
        "quality": r"as accurate as (?:possible|we can|you can)|(?:the\s+)?most accurate|maximi[sz]e (?:the )?(?:accuracy|quality|f1)"
        r"|(?:the\s+)?(?:best|highest) (?:possible )?(?:accuracy|quality|f1)",
        "flops": r"fewest (?:flops|operations|macs)|minimi[sz]e (?:the )?(?:flops|compute|macs|operations)|least (?:compute|flops)",
    }
    for name, pattern in superlatives.items():
        _each(r, rf"\b(?:{pattern})\b", order(name))
    if m := re.search(r"\bas small as (?:possible|we can|you can)|\bsmallest\b|\bminimal\b", r.text, _F):
        r.found.setdefault("size_word", "minimal")
    size_word = r"\b(?P<w>tiny|small|compact|light-?weight|little|micro|minimal|slim|lean)\b"
    after = r"(?=(?:[\s,]+(?:and|but|yet|very|really|\w+))*?\s*(?:model|network|net|nn|cnn|mlp|classifier|architecture|one|footprint)\b|\s*(?:and|but|yet|please|[,;.!)]|$))"
    for m in re.finditer(size_word + after, r.text, _F):
        if r.free(m) and not re.search(
            r"(?:data(?:set)?|images?|inputs?|objects?|samples?)\s*$", r.text[m.end() : m.end() + 12], _F
        ):
            word = m.group("w").lower()
            r.found.setdefault("size_word", "tiny" if word in ("tiny", "micro", "minimal") else "small")
            r.hints.append(word)
            order("size")(m)
    speed = (
        r"\b(fast|faster|quick|speedy|low[- ]latency|real[- ]?time|snappy|responsive|high[- ]throughput)\b"
    )
    for m in re.finditer(speed, r.text, _F):
        if r.free(m):
            r.hints.append("fast")
            order("latency")(m)


def _merge_orders(r: _Reading) -> tuple[str, ...]:
    """One priority order from the stated ones, in the text's order; a pair stated both ways keeps the first."""
    merged: list[str] = []
    for names, phrase in r.orders:
        for a, b in zip(names, names[1:], strict=False):
            if a in merged and b in merged and merged.index(b) < merged.index(a):
                r.contradictions.append(
                    f'"{phrase}" puts {a} before {b}, an earlier phrase the other way: kept the first'
                )
        for name in names:
            if name not in merged:
                merged.append(name)
    return tuple(merged)


def _task(r: _Reading) -> None:
    regression = (
        rf"\bregress\w*|\b(?:predict|estimat|forecast)\w*\s+(?:the\s+|a\s+|an\s+|how\s+(?:much|many|long)\s+)?"
        rf"(?:[\w-]+\s+){{0,2}}?(?:{_QUANTITY})s?\b|\b(?:continuous|numeric|numerical|real-valued) (?:target|output|value|label)s?"
    )
    classification = (
        rf"\b(?:classif\w*|recogni[sz]e|categori[sz]e|binary|multi-?class|yes/no|yes or no)\b|\b(?:predict|identify|determine|detect)\w*"
        rf"\s+(?:the\s+|a\s+|an\s+|which\s+|its\s+)?(?:[\w-]+\s+){{0,2}}?(?:{_CLASS_NOUNS})\b|\b(?:detect|tell|decide|determine|predict)\w*\s+(?:whether|if)\b"
    )
    for kind, pattern in (("regression", regression), ("classification", classification)):
        for m in re.finditer(pattern, r.text, _F):
            if r.free(m):  # "predict disease progression" is read once, as regression
                r.mark(m)
                r.tasks.setdefault(kind, r.clause(m))
    classes = r"(?:classes|categories|labels|classes of|types|kinds|species|outcomes|groups|digit classes|possible (?:classes|labels))"
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
        rf"\b(\d+|{'|'.join(words)})(?:\s+(?:different|distinct|possible))?\s+{classes}\b|\b(\d+)[- ](?:class|way)\b",
        r.text,
        _F,
    ):
        r.mark(m)
        value = m.group(1) or m.group(2)
        r.found["num_classes"] = int(words.get(value.lower(), value))
    elif m := re.search(
        r"\b(?:binary|yes/no|yes or no|two-class)\b|\b(?:detect|tell|decide|determine|predict)\w*\s+(?:whether|if)\b",
        r.text,
        _F,
    ):
        r.found["num_classes"] = 2


def _modality(r: _Reading) -> None:
    for name, pattern in _MODALITY.items():
        if m := re.search(rf"\b(?:{pattern})", r.text, _F):
            r.modalities.setdefault(name, r.mark(m))
    for m in re.finditer(r"\b(\d+)\s*[x×]\s*(\d+)(?:\s*[x×]\s*(\d+))?\b", r.text, _F):
        r.mark(m)
        r.found.setdefault("input_shape", tuple(int(g) for g in m.groups() if g))
        r.modalities.setdefault("image", m.group(0))
    for m in re.finditer(
        r"\b\d+[- ]?(?:time[- ]?steps?|steps?|samples? long|points?|channels?|leads?|features?|columns?|pixels?|bands?)\b",
        r.text,
        _F,
    ):
        r.assumptions.append(f'"{r.mark(m)}": the input\'s shape is taken from --data')


def _hardware(r: _Reading) -> None:
    if m := re.search(rf"\b(?:{_MCU})\b", r.text, _F):
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
    if m := re.search(rf"\b(?:{_DEVICE})\b", r.text, _F):
        r.mark(m)
        r.assumptions.append(
            f"{m.group(0)}: latency is measured on this machine's CPU, not on the device; "
            "state a limit in ms as measured here"
        )


# ------------------------------------------------------------------------------------------- the reader

_RULES = (
    _unsupported,
    _sizes,
    _flops,
    _latency,
    _params,
    _bare_params,
    _floors,
    _priorities,
    _task,
    _modality,
    _hardware,
)


def _clauses(text: str, words: bool = True) -> list[tuple[int, int]]:
    """Spans of the text's clauses: cut at ; newlines, ", " and ". " (not inside numbers), and with
    ``words`` at "and", "but", "while", "with", "so that"."""
    joins = r"|\s+(?:and|but|while|with|so that)\s+" if words else ""
    cuts = [m.span() for m in re.finditer(rf"[;\n]|,\s+|\.(?:\s+|$){joins}", text)]
    spans, start = [], 0
    for a, b in cuts:
        spans.append((start, a))
        start = b
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _unread(r: _Reading) -> None:
    """A clause no rule read, and a number no rule read, are listed as not understood."""
    for start, end in _clauses(r.text):
        clause = r.text[start:end].strip()
        inside = [(max(s, start), min(e, end)) for s, e in r.read if s < end and start < e]
        for m in re.finditer(
            r"(?<![\w.\-/])\d+(?:[.,]\d+)*(?:e[+-]?\d+)?(?:\s*(?:k|m|%))?(?![\w\-/])", clause, _F
        ):
            a = start + (len(r.text[start:end]) - len(r.text[start:end].lstrip())) + m.start()
            if not any(s <= a < e for s, e in inside):
                r.not_understood.append(f'"{m.group(0)}" in "{clause}"')
        if inside:
            continue
        rest = re.sub(rf"{_FILLER}|{_TASK_WORDS}|[^\w]+", " ", clause, flags=_F).strip()
        if re.search(rf"{_TASK_WORDS}", clause, _F) and not re.search(r"\d", clause):
            continue  # a task statement the data settles ("predict the outcome from the readings")
        if rest and not any(clause in line for line in r.not_understood):
            r.not_understood.append(clause)


def _read(text: str) -> TaskSpec:
    if not text or not text.strip():
        raise SpecError('requirements text is empty: say what the model should do, e.g. "classify digits"')
    r = _Reading(text.strip())
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
    if priorities := _merge_orders(r):
        found["priorities"] = priorities
    if priorities and priorities[0] in ("size", "latency", "flops"):
        found["reward_alpha"] = found["reward_beta"] = -0.3  # the cost stated first weighs as MnasNet's soft
    return TaskSpec(
        text=r.text,
        **found,
        hints=tuple(dict.fromkeys(r.hints)),
        assumptions=tuple(dict.fromkeys(r.assumptions)),
        not_understood=tuple(dict.fromkeys(r.not_understood)),
        contradictions=tuple(r.contradictions),
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
    if not text.strip():
        return None
    spec = parse_requirements(text)
    return spec.task if "task" in spec.model_fields_set else None


def asked_modality(text: str) -> str | None:
    """The kind of input the requirements name ("time series" -> sequence), or None."""
    if not text.strip():
        return None
    spec = parse_requirements(text)
    return spec.modality if "modality" in spec.model_fields_set else None
