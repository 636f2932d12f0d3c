"""What every rule of the requirements reader shares: number and bound patterns, the reading so far (what
has been read, what it set), and the text's clauses. The rules live in units.py (limits), goals.py (floors,
priorities, tolerance) and requirements.py (task, input, hardware; the reader itself)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from llmnas.task.spec import REGRESSION_FLOORS

FLAGS = re.IGNORECASE
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
NUMBER = r"(?<![\w.-])(\d{1,3}(?:[, \u00a0\u202f]\d{3})+(?![\d.])|\d*\.\d+|\d+(?:\.\d+)?(?:e[+-]?\d+)?)"  # 20,000  20 000  .95  3e4
SCALE = r"k|thousand|million|mio|m|billion|b"  # what may follow a count: 20k, 1.5 million
UPPER = (
    r"(?:under|below|beneath|less than|fewer than|lower than|smaller than|at most|no more than|not more than"
    r"|not exceed(?:ing)?|no (?:bigger|larger|greater|higher|slower) than|max(?:imum|imal)?(?:\s+of)?"
    r"|within|up to|cap(?:ped)? at|limit(?:ed)? to|budget of|<=?|≤|sub-?|fits? (?:in(?:to)?|within|on)"
    r"|must fit (?:in(?:to)?|within|on)|should fit (?:in(?:to)?|within|on)|fit (?:in(?:to)?|within|on))"
)
LOWER = r"(?:at least|more than|over|above|greater than|higher than|min(?:imum)?(?:\s+of)?|>=?|≥|no less than|exceed(?:s|ing)?)"
APPROX = r"(?:about|around|roughly|approximately|approx\.?|~|circa|close to|on the order of|in the range of)"


@dataclass(frozen=True)
class Order:
    """One stated priority order: ``top`` puts its first name above all ("accuracy first"); a ``weak`` one
    is only a word ("small", "fast") and gives way to any stated order."""

    names: tuple[str, ...]
    phrase: str
    start: int
    top: bool = False
    weak: bool = False


@dataclass
class Reading:
    """What the rules have read so far from one text."""

    text: str
    read: list[tuple[int, int]] = field(default_factory=list)  # spans rules read
    limits: dict[str, dict[float, str]] = field(default_factory=dict)  # field -> {value: phrase}
    floors: dict[str, dict[float, str]] = field(default_factory=dict)
    found: dict = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)
    modalities: dict[str, str] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)  # stated priority orders
    size_floors: list[tuple[int, str]] = field(default_factory=list)
    ignored: set[str] = field(default_factory=set)  # "I don't care about size"
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
        return next((self.text[a:b].strip() for a, b in clauses(self.text) if a <= m.start() < b), m.group(0))

    def limit(self, name: str, value: float, m: re.Match) -> None:
        self.limits.setdefault(name, {}).setdefault(value, self.mark(m))

    def floor(self, name: str, value: float, m: re.Match) -> None:
        self.floors.setdefault(name, {}).setdefault(value, self.mark(m))
        if name in REGRESSION_FLOORS:
            self.tasks.setdefault("regression", self.clause(m))


def number(value: str, suffix: str | None = None) -> float:
    """ "20,000" -> 20000, ("1.5", "M") -> 1.5e6, "3e4" -> 30000."""
    return float(re.sub(r"[, \u00a0\u202f]", "", value)) * _SUFFIX.get((suffix or "").lower(), 1)


def each(r: Reading, pattern: str, handle: Callable[[re.Match], None]) -> None:
    for m in re.finditer(pattern, r.text, FLAGS):
        if r.free(m):
            handle(m)


def each_in_clauses(
    r: Reading, context: str, pattern: str, handle: Callable[[re.Match], None], words: bool = True
) -> None:
    """``each``, within the clauses that match ``context``: a unit or a subject named once for the clause
    ("under 1k but at least 1M params", "2 ms on CPU")."""
    compiled = re.compile(pattern, FLAGS)
    for start, end in clauses(r.text, words):
        if re.search(context, r.text[start:end], FLAGS):
            for m in compiled.finditer(r.text, start, end):
                if r.free(m):
                    handle(m)


def clauses(text: str, words: bool = True) -> list[tuple[int, int]]:
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
