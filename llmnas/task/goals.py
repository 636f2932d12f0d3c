"""Rules for what the model should achieve and what matters most: quality floors, priority orders, the
tolerance a cost-first priority may give up."""

from __future__ import annotations

import re
from collections.abc import Callable

from llmnas.task.phrases import FLAGS, LOWER, NUMBER, UPPER, Order, Reading, each, number

_METRIC = (
    r"(balanced[- ]acc(?:uracy)?|(?:macro[- ](?:averaged[- ])?|weighted[- ])?f1(?:[- ]score)?|top-?1(?:\s+accuracy)?"
    r"|accuracy|accurate|acc|mean[- ]absolute[- ]error|root[- ]mean[- ]squared?[- ]error|error[- ]rate"
    r"|misclassification(?: rate)?|errors?|mae|rmse"
    r"|r2|r²|r\^2|r-squared|r squared|coefficient of determination)"
)
_PCT = rf"{NUMBER}\s*(%|percent|pct|per cent|points?)?"
_OBJ = {
    "quality": r"accuracy|accurate|quality|performance|precision|f1|predictive power|correctness",
    "size": r"(?:model\s+)?size|small(?:er|ness)?|parameters?|params|(?:memory\s+)?footprint|compactness|weights"
    r"|light(?:er|ness)?",
    "latency": r"(?:low\s+)?latency|speed|fast(?:er)?|inference(?:\s+(?:time|speed))?|response time|runtime|throughput",
    "flops": r"flops|compute|macs|operations|multiply[- ](?:accumulates?|adds?)|mult-adds",
}
_ANY_OBJ = "|".join(f"(?:{p})" for p in _OBJ.values())


def tolerance(r: Reading) -> None:
    """ "within 1 point of the best", "giving up at most 2% accuracy": what a cost-first priority may give up."""

    def handle(m: re.Match) -> None:
        r.found["tolerance"] = float(m.group("v")) / 100
        r.mark(m)

    each(
        r,
        r"(?:within|giving up (?:at most|no more than|up to)|los(?:e|ing) (?:at most|no more than|up to))\s*"
        r"(?P<v>\d+(?:\.\d+)?)\s*(?:%|percent(?:age)?)?\s*(?:points?|pts?|pp)?\s*(?:of accuracy\s*)?"
        r"(?:of (?:the )?(?:best|top)(?: accuracy| score| model)?|accuracy|is fine|is ok(?:ay)?)",
        handle,
    )


def floors(r: Reading) -> None:
    def value_of(pct: str, unit: str | None, metric: str) -> float | None:
        v = number(pct)
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
                if name == "error" and re.search("absolute|square|mean", metric):
                    continue
                return name
        return "accuracy"

    def set_floor(m: re.Match, metric: str, bound: str | None, pct: str, unit: str | None) -> None:
        name = name_of(metric)
        value = value_of(pct, unit, "mae" if name in ("mae", "rmse") else name)
        error_like = name in ("error", "mae", "rmse")
        good = bound == "good"  # "no worse than": at least for scores, at most for errors
        upper = good and error_like or bool(bound and re.fullmatch(UPPER, bound.strip(), FLAGS))
        lower = good and not error_like or bool(bound and re.fullmatch(LOWER, bound.strip(), FLAGS))
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

    bound = (
        rf"(?P<b>{LOWER}|{UPPER}|of|:|=|is|are|be|should|must|needs? to|has to|to|reach(?:es|ing)?|stay|remain|score"
        r"|no worse than|not worse than|better than|worse than|always|still)"
    )
    more = r"(?:\s*(?:\+|or (?:more|better|higher|above|greater|less|lower|below|fewer|under)))?"
    each(
        r,
        rf"\b{_METRIC}\s*(?:score\s*)?(?:on (?:the )?(?:validation|test|held-out) (?:set|data)\s*)?"
        rf"(?:{bound}\s*)*{_PCT}{more}",
        lambda m: _floor_after(m, set_floor),
    )
    each(
        r,
        rf"(?P<b2>{LOWER}|{UPPER})?\s*{_PCT}\s*(?P<plus>\+|or (?:more|better|higher|above))?\s*"
        rf"(?:(?:validation|test|val|top-?1|classification)\s+)?{_METRIC}",
        lambda m: _floor_before(m, set_floor),
    )

    def missed(m: re.Match) -> None:  # "miss at most 3% of samples": an error rate
        r.floor("accuracy", round(1 - float(m.group("v")) / 100, 10), m)

    each(
        r,
        rf"\b(?:miss(?:es)?|misclassif(?:y|ies)|get(?:s)? wrong|err(?:s)? on)\s+(?:{UPPER})\s*(?P<v>\d+(?:\.\d+)?)\s*(?:%|percent)"
        r"(?:\s+of\s+(?:the\s+)?(?:samples|cases|examples|inputs|images|items|predictions|rows))?",
        missed,
    )

    def bare(m: re.Match) -> None:  # "the smallest model that gets 98%", "while above 90%"
        r.floor("accuracy", float(m.group("v")) / 100, m)

    each(
        r,
        r"(?:gets?|getting|reach(?:es|ing)?|achiev\w*|hit(?:s|ting)?|scor\w*|above|over|at least|no less than"
        r"|keeps?|stays? above|>=?|≥)\s*(?P<v>\d+(?:\.\d+)?)\s*(?:%|percent)(?!\s*(?:of|smaller|fewer|less|faster))",
        bare,
    )


def _floor_after(m: re.Match, set_floor) -> None:
    """ "accuracy of at least 95%", "F1 >= 0.9", "MAE under 45", "top-1 93% or more"."""
    text = m.group(0)
    metric = re.match(_METRIC, text, FLAGS).group(0)
    tail = text[len(metric) :]
    bounds = re.findall(rf"({LOWER}|{UPPER})", tail, FLAGS)
    more = re.search(r"or (more|better|higher|above|greater)|\+", tail, FLAGS)
    less = re.search(r"or (less|lower|below|fewer|under)", tail, FLAGS)
    bound = bounds[-1] if bounds else ("at least" if more else "under" if less else None)
    if re.search(r"(?:no|not) worse than|better than", tail, FLAGS):
        bound = "good"
    value = re.search(rf"{NUMBER}\s*(%|percent|pct|per cent)?", tail)
    if value:
        set_floor(m, metric, bound, value.group(1), value.group(2))


def _floor_before(m: re.Match, set_floor) -> None:
    """ "at least 95% accuracy", "95%+ top-1", "less than 5% error"."""
    text = m.group(0)
    value = re.search(rf"{NUMBER}\s*(%|percent|pct|per cent)?", text)
    metric = re.search(rf"{_METRIC}$", text, FLAGS).group(0)
    bound = m.group("b2") or ("at least" if m.group("plus") else None)
    if bound is None and not value.group(2) and number(value.group(1)) > 1:
        return  # "10 accuracy" is no floor
    set_floor(m, metric, bound, value.group(1), value.group(2))


def priorities(r: Reading) -> None:
    def obj(word: str) -> str:
        for name, pattern in _OBJ.items():
            if re.fullmatch(pattern, word.strip(), FLAGS):
                return name
        raise AssertionError(word)

    def order(*names: str, top: bool = False, weak: bool = False) -> Callable[[re.Match], None]:
        def handle(m: re.Match) -> None:
            said = tuple(dict.fromkeys(obj(m.group(n)) if n.startswith("o") else n for n in names))
            r.orders.append(Order(said, r.mark(m), m.start(), top, weak))

        return handle

    def overlapping(pattern: str, handle: Callable[[re.Match], None]) -> None:
        """Priority phrases may hold a floor or a limit ("accuracy of at least 90% matters more than speed")."""
        for m in re.finditer(pattern, r.text, FLAGS):
            handle(m)

    o1, o2, o3, o4 = (rf"(?P<o{i}>{_ANY_OBJ})" for i in (1, 2, 3, 4))
    be = r"(?:matters?|is|are|counts?|weighs?)\s+(?:much\s+|far\s+|a lot\s+|way\s+|slightly\s+)?"
    said = r"(?:\s+[\w%.]+){0,5}?\s+"  # "accuracy [of at least 90%] matters more than speed"
    overlapping(rf"\b{o1}\b{said}{be}more(?:\s+important)?\s+than\s+{o2}", order("o1", "o2"))
    overlapping(rf"\b{o1}\b{said}{be}less(?:\s+important)?\s+than\s+{o2}", order("o2", "o1"))
    # "latency matters more", "accuracy is more important": more than the other concerns, so first
    overlapping(rf"\b{o1}\b{said}{be}more(?:\s+important)?\b(?!\s+than\b)", order("o1", top=True))
    each(r, rf"\bcares?\s+more\s+(?:about|for)\s+{o1}\s+than\s+(?:about\s+|for\s+)?{o2}", order("o1", "o2"))
    each(r, rf"\bcares?\s+less\s+(?:about|for)\s+{o1}\s+than\s+(?:about\s+|for\s+)?{o2}", order("o2", "o1"))
    each(
        r,
        rf"\b(?:prioriti[sz]e|favou?r|prefer|optimi[sz]e for)\s+{o1}\s+(?:over|above|before|rather than|to)\s+{o2}",
        order("o1", "o2"),
    )
    each(r, rf"\b{o1}\s+(?:over|before|ahead of|rather than|>)\s+{o2}\b", order("o1", "o2"))
    each(
        r,
        rf"\b{o1}\s+first(?:[,;]?\s*(?:and\s+)?(?:then|second|followed by|after that)\s+{o2})?"
        rf"(?:[,;]?\s*(?:and\s+)?(?:then|third|followed by)\s+{o3})?",
        lambda m: order(*[n for n in ("o1", "o2", "o3") if m.group(n)], top=True)(m),
    )
    aim = r"(?:priority|concern|goal|objective|focus|constraint|thing)"
    each(
        r,
        rf"\b(?:prioriti[sz]e|favou?r|optimi[sz]e for|focus on)\s+(?:fewer\s+|lower\s+|smaller\s+|less\s+|higher\s+)?{o1}"
        rf"|\b{o2}\s+(?:is\s+what\s+)?(?:matters?|counts?)\s+(?:the\s+)?most|\bmost important(?:\s+(?:is|thing is))?\s+{o3}"
        rf"|\b{o4}\s+(?:is|are)\s+(?:the\s+|our\s+|my\s+)?(?:(?:top|main|first|key|primary|biggest|major|only)\s+)?{aim}"
        rf"|\b(?:keep\s+)?{o1.replace('o1', 'o5')}\s+(?:as\s+(?:high|low|small)\s+as\s+possible|is\s+king|above\s+all(?:\s+else)?)"
        rf"|\bthe\s+(?:fewer|less|lower|smaller)\s+{o1.replace('o1', 'o6')}\s*,?\s*the\s+better",
        lambda m: order(next(n for n in ("o1", "o2", "o3", "o4", "o5", "o6") if m.group(n)), top=True)(m),
    )
    each(  # "size second", "then accuracy", "accuracy comes second": after what is placed so far
        r,
        rf"\b{o1}\s+(?:comes?\s+|is\s+)?(?:second|third|next|last)\b|\b(?:then|and then|followed by)\s+(?:the\s+)?{o2}\b",
        lambda m: order(next(n for n in ("o1", "o2") if m.group(n)))(m),
    )
    better = {
        "smaller": "size",
        "lighter": "size",
        "faster": "latency",
        "quicker": "latency",
        "more accurate": "quality",
    }
    word = "|".join(better)

    def rather(m: re.Match) -> None:
        first, second = (m.group(g).lower() for g in ("a", "b"))
        r.orders.append(Order((better[first], better[second]), r.mark(m), m.start()))

    each(
        r,
        rf"\brather\s+(?:have\s+|get\s+|use\s+)?(?:(?:it|the model|a|an)\s+)?(?:be\s+)?(?P<a>{word})\b[^.;]{{0,40}}?\bthan\s+"
        rf"(?:(?:a|an|it|the)\s+)?(?:be\s+)?(?:slightly\s+|a bit\s+|marginally\s+|somewhat\s+)?(?P<b>{word})\b",
        rather,
    )

    def ignored(m: re.Match) -> None:
        r.ignored.add(obj(next(m.group(n) for n in ("o1", "o2") if m.group(n))))
        r.mark(m)

    each(
        r,
        rf"\b(?:(?:do|does)\s*n[o']?t|do not|does not|never)\s+(?:really\s+)?care\s+(?:about|for)\s+(?:the\s+)?{o1}"
        rf"|\b{o2}\s+(?:does\s*n[o']?t|does not|is not|isn'?t)\s+(?:really\s+)?(?:matter|important|a concern)",
        ignored,
    )
    superlatives = {
        "size": r"as small as (?:possible|we can|you can)|(?:the\s+)?(?:smallest|lightest|tiniest|leanest)|minimi[sz]e (?:the )?(?:model )?(?:size|parameters?|params|footprint)"
        r"|fewest (?:parameters|params|weights)|as few (?:parameters|params|weights) as possible",
        "latency": r"as fast as (?:possible|we can|you can)|(?:the\s+)?fastest|minimi[sz]e (?:the )?(?:latency|inference time)"
        r"|lowest (?:possible )?latency",
        "quality": r"as accurate as (?:possible|we can|you can)|(?:the\s+)?most accurate|maximi[sz]e (?:the )?(?:accuracy|quality|f1)"
        r"|(?:the\s+)?(?:best|highest) (?:possible )?(?:accuracy|quality|f1)",
        "flops": r"fewest (?:flops|operations|macs)|minimi[sz]e (?:the )?(?:flops|compute|macs|operations)|least (?:compute|flops)",
    }
    for name, pattern in superlatives.items():
        each(r, rf"\b(?:{pattern})\b", order(name, top=True))
    if m := re.search(r"\bas small as (?:possible|we can|you can)|\bsmallest\b|\bminimal\b", r.text, FLAGS):
        r.found.setdefault("size_word", "minimal")
    size_word = r"\b(?P<w>tiny|small|compact|light-?weight|little|micro|minimal|slim|lean)\b"
    after = r"(?=(?:[\s,]+(?:and|but|yet|very|really|\w+))*?\s*(?:model|network|net|nn|cnn|mlp|classifier|architecture|one|footprint)\b|\s*(?:and|but|yet|please|[,;.!)]|$))"
    for m in re.finditer(size_word + after, r.text, FLAGS):
        if r.free(m) and not re.search(
            r"(?:data(?:set)?|images?|inputs?|objects?|samples?)\s*$", r.text[m.end() : m.end() + 12], FLAGS
        ):
            word = m.group("w").lower()
            r.found.setdefault("size_word", "tiny" if word in ("tiny", "micro", "minimal") else "small")
            r.hints.append(word)
            order("size", weak=True)(m)
    speed = (
        r"\b(fast|faster|quick|speedy|low[- ]latency|real[- ]?time|snappy|responsive|high[- ]throughput)\b"
    )
    for m in re.finditer(speed, r.text, FLAGS):
        if r.free(m):
            r.hints.append("fast")
            order("latency", weak=True)(m)


def merge_orders(r: Reading) -> tuple[str, ...]:
    """One priority order from the stated ones, taken in the text's order. A stated order that an earlier
    stated one contradicts ("latency matters more than accuracy; accuracy first") keeps the earlier and
    says so; words ("small", "fast") give way to stated orders."""
    merged: list[str] = []
    fixed: set[tuple[str, str]] = set()  # (a, b): a stated order put a above b
    first: list[str] = []  # what the first "X first" / "as small as possible" put above everything

    def contradicted(a: str, o: Order) -> None:
        r.contradictions.append(f'"{o.phrase}" puts {a} first; an earlier phrase says otherwise: kept it')

    def place(a: str, b: str, o: Order) -> None:
        if first and b == first[0] and a != b:
            return contradicted(a, o)
        if a in merged and b in merged and merged.index(a) > merged.index(b):
            if (b, a) in fixed:
                return contradicted(a, o)
            merged.remove(a)
        if a not in merged:
            merged.insert(merged.index(b) if b in merged else len(merged), a)
        if b not in merged:
            merged.append(b)
        if not o.weak:
            fixed.add((a, b))

    for o in sorted(r.orders, key=lambda o: o.start):
        if o.top and first and first[0] != o.names[0]:
            contradicted(o.names[0], o)
            continue
        if o.top:
            first[:] = [o.names[0]]
            for other in [n for n in merged if n != o.names[0]]:
                place(o.names[0], other, o)
        if o.names[0] not in merged:
            merged.append(o.names[0])
        for a, b in zip(o.names, o.names[1:], strict=False):
            place(a, b, o)
    return tuple(n for n in merged if n not in r.ignored or n == "quality")
