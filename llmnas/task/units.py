"""Rules for limits and size targets: parameters, bytes (at float32), FLOPs and MACs, latency and rates, memory."""

from __future__ import annotations

import re

from llmnas.task.phrases import (
    APPROX,
    FLAGS,
    LOWER,
    NUMBER,
    SCALE,
    UPPER,
    Reading,
    each,
    each_in_clauses,
    number,
)
from llmnas.task.spec import BYTES_PER_PARAM

_PARAMS = r"(?:trainable\s+)?(?:param(?:eter)?s?|weights)\b"
_BYTES = r"(kib|kb|kbytes?|kilobytes?|mib|mb|mbytes?|megabytes?|gib|gb|gigabytes?|bytes?)\b"
_BYTE_SCALE = {"k": 1e3, "m": 1e6, "g": 1e9}
_TIME = r"(ms|msec|millisec(?:ond)?s?|us|µs|μs|microsec(?:ond)?s?|s|secs?|seconds?)\b"
_FLOPS = (
    r"(?:(k|m|g|t)(?:flops?|macs?)|(?:flops?|macs?|mult(?:iply)?[- ]?(?:adds?|accumulates?|accumulations?)"
    r"|multiplications?))\b"
)
_RAM = r"(?:of\s+)?(?:ram|sram|dram|memory|heap)\b"


def _bytes_of(value: str, unit: str) -> float:
    unit = unit.lower()
    if unit.startswith("byte"):
        return number(value)
    scale = 1024 ** ("kmg".index(unit[0]) + 1) if "i" in unit[:3] and unit[1] == "i" else _BYTE_SCALE[unit[0]]
    return number(value) * scale


def sizes(r: Reading) -> None:
    """Model size in bytes (parameters at float32) and memory (RAM) limits."""
    mib = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}

    def memory(m: re.Match) -> None:
        unit = m.group("unit").lower()
        value = (
            number(m.group("n")) / 2**20 if unit.startswith("byte") else number(m.group("n")) * mib[unit[0]]
        )
        r.limit("max_memory_mb", value, m)

    each(r, rf"(?:{UPPER}\s*)?(?P<n>{NUMBER})\s*(?P<unit>{_BYTES[1:-3]})\b\s*{_RAM}", memory)
    each(
        r,
        rf"(?:ram|memory|heap)\b(?:\s+(?!{UPPER})[a-z]+){{0,5}}?\s*(?:{UPPER}|:|of)\s*(?P<n>{NUMBER})\s*(?P<unit>{_BYTES[1:-3]})\b",
        memory,
    )

    def model_bytes(m: re.Match) -> None:
        if re.match(LOWER, m.group(0), FLAGS):
            return
        size = int(_bytes_of(m.group("n"), m.group("unit")))
        r.limit("max_bytes", size, m)
        r.limit("max_params", size // BYTES_PER_PARAM, m)
        r.hints.append(f"{m.group('n')} {m.group('unit')} of float32 weights")

    each(r, rf"(?:{LOWER}\s*|{UPPER}\s*)?(?P<n>{NUMBER})\s*(?P<unit>{_BYTES[1:-3]})\b", model_bytes)
    if m := re.search(
        r"\b(int8|8[- ]bit|quanti[sz]\w*|int4|4[- ]bit|fp16|float16|half[- ]precision|16[- ]bit)\b",
        r.text,
        FLAGS,
    ):
        r.mark(m)
        r.assumptions.append(
            f"{m.group(0)}: llmnas trains and exports float32 weights; sizes count {BYTES_PER_PARAM} bytes per "
            "parameter (quantise the export yourself to shrink it)"
        )


def params(r: Reading) -> None:
    def limit(m: re.Match) -> None:
        r.limit("max_params", int(number(m.group("n"), m.group("s"))), m)

    n = rf"(?P<n>{NUMBER})\s*(?P<s>{SCALE})?(?![a-z])"
    for pattern in (
        rf"{UPPER}\s*{n}[\s-]*{_PARAMS}",
        rf"{_PARAMS}\s*(?:count\s*)?(?:{UPPER}|:|=|of at most)\s*{n}",
        rf"{_PARAMS}\s*(?:cap|limit|budget|ceiling)\s*(?:of|:|at|is)?\s*{n}",
        rf"{n}[\s-]*param(?:eter)?s?[\s-]*(?:cap|limit|budget|ceiling|max(?:imum)?)\b",
        rf"(?:cap|limit|budget|ceiling)\s+of\s+{n}\s*{_PARAMS}",
        rf"{n}\s*{_PARAMS}\s*(?:or (?:less|fewer|below|under)|max(?:imum)?|at most|tops|at the most)",
    ):
        each(r, pattern, limit)

    def target(m: re.Match) -> None:
        r.found["target_params"] = int(number(m.group("n"), m.group("s")))
        r.mark(m)

    each(r, rf"{APPROX}\s*{n}[\s-]*{_PARAMS}", target)
    each(r, rf"\ban?\s+{n}[\s-]*param(?:eter)?s?\s+(?:model|network|net|cnn|mlp|classifier)", target)

    def at_least(m: re.Match) -> None:
        r.size_floors.append((int(number(m.group("n"), m.group("s"))), r.mark(m)))

    each(r, rf"{LOWER}\s*{n}[\s-]*{_PARAMS}", at_least)


def bare_params(r: Reading) -> None:
    """ "under 1k but at least 1M params": bounds with no unit, in a clause that names parameters."""
    unit = r"(?!\s*(?:ms|us|µs|s\b|sec|%|[kmgt]?flops|[kmgt]?macs|[kmg]i?b\b|bytes?|x\s*\d|hz|fps|classes|points?))"
    bare = rf"\s*(?P<n>{NUMBER})\s*(?P<s>{SCALE})?(?![\w.]){unit}"

    def upper(m: re.Match) -> None:
        r.limit("max_params", int(number(m.group("n"), m.group("s"))), m)

    def lower(m: re.Match) -> None:
        r.size_floors.append((int(number(m.group("n"), m.group("s"))), r.mark(m)))

    each_in_clauses(r, _PARAMS, UPPER + bare, upper, words=False)
    each_in_clauses(r, _PARAMS, LOWER + bare, lower, words=False)


def flops(r: Reading) -> None:
    def limit(m: re.Match) -> None:
        if m.group("low"):
            r.not_understood.append(f"{m.group(0).strip()} (a lower bound on FLOPs is not searched for)")
            r.mark(m)
            return
        flops = number(m.group("n"), m.group("s")) * {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}.get(
            (m.group("p") or "").lower(), 1
        )
        if re.search(r"mac|mult|accumul", m.group("u"), FLAGS) and not re.search(
            "multiplications", m.group("u"), FLAGS
        ):
            flops *= 2  # a multiply-add is two floating-point operations
        r.limit("max_flops", int(flops), m)

    n = rf"(?P<n>{NUMBER})\s*(?P<s>{SCALE})?\s*"
    unit = rf"(?P<u>{_FLOPS.replace('(k|m|g|t)', '(?P<p>k|m|g|t)')})"
    each(r, rf"(?:(?P<low>{LOWER})\s*|(?:{UPPER}|{APPROX})\s*)?{n}{unit}", limit)
    unit2 = unit.replace("?P<u>", "?P<u2>").replace("?P<p>", "?P<p2>")

    def reversed_(m: re.Match) -> None:
        flops = number(m.group("n"), m.group("s")) * {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}.get(
            (m.group("p2") or "").lower(), 1
        )
        if re.search(r"mac|mult|accumul", m.group("u2"), FLAGS):
            flops *= 2
        r.limit("max_flops", int(flops), m)

    each(r, rf"{unit2}\s*(?:per (?:sample|inference|image|input)\s*)?(?:{UPPER}|:)\s*{n}(?![\w])", reversed_)


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
    r"|finish\w*|complet\w*|answer\w*|return\w*|calls?\b|deadline|time budget|takes?\b"
)


def latency(r: Reading) -> None:
    def limit(m: re.Match) -> None:
        ms = _ms(m.groupdict().get("n") or ("0.5" if "half" in m.group(0).lower() else "1"), m.group("u"))
        if m.groupdict().get("approx"):
            r.found["target_latency_ms"] = ms
            r.mark(m)
        else:
            r.limit("max_latency_ms", ms, m)

    time = rf"(?P<n>\d+(?:\.\d+)?)\s*(?P<u>{_TIME[1:-3]})\b"
    each(r, rf"(?:(?P<approx>{APPROX})|{UPPER})\s*{time}", limit)
    each(
        r, rf"{UPPER}\s*(?:a|one|half a)\s+(?P<u>second|millisecond|microsecond)\b", limit
    )  # "under a second"
    each(r, rf"{time}\s*(?:max(?:imum)?|at most|or less|or under|tops|at the most|or faster)\b", limit)

    def bare(m: re.Match) -> None:  # "2 ms on CPU", "latency: 5ms"; "at least 2 ms" is no limit
        if not re.search(rf"{LOWER}\s*$", r.text[: m.start()], FLAGS):
            limit(m)

    each_in_clauses(r, _LATENCY_CONTEXT, time, bare)

    def rate(m: re.Match) -> None:
        per_second = number(m.group("n"), m.group("s")) * (1000 if m.groupdict().get("k") else 1)
        r.limit("max_latency_ms", 1000 / per_second, m)

    n = rf"(?P<n>{NUMBER})\s*(?P<s>k|thousand)?\s*"
    things = r"(?:inferences?|predictions?|classifications?|samples?|images?|frames?|queries|requests|windows?|calls|forward passes)"

    def sampled(m: re.Match) -> None:
        r.not_understood.append(
            f"{r.mark(m)} (the data's sampling rate: not a speed limit; the data sets the input)"
        )

    each(
        r,
        rf"(?:sampled|sampling(?: rate| frequency)?|recorded|captured|collected|measured)\s*(?:at|of|:)?\s*{NUMBER}\s*k?hz\b",
        sampled,
    )
    each(r, rf"(?:{LOWER}\s*)?{n}{things}\s*(?:per|a|each|/)\s*(?:second|sec|s)\b", rate)
    each(
        r,
        rf"(?:{LOWER}\s*|at\s+|of\s+)?{n}(?P<k>k)?(?:hz|fps|qps|frames per second|inferences per second)\b",
        rate,
    )
