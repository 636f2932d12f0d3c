"""Carbon-aware scheduling: the grid's intensity over time, the run's clock, and the end-of-round pacer.

``--carbon-forecast FILE.csv`` holds rows ``timestamp,gCO2/kWh`` (ISO 8601, UTC unless the timestamp
says otherwise; an optional header line). The intensity is a step function: each row holds until the
next; before the first row the first value holds, after the last the last. Without a forecast the grid
is the constant ``--carbon-intensity``.

Pacing happens only between rounds (CarbonPacer, an end-of-round listener), so it decides *when* rounds
run, never *what* they propose or how candidates are rewarded. The clock is injectable: tests pass a
simulated one and nothing waits for real.
"""

from __future__ import annotations

import bisect
import csv
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from llmnas.config import parse_time
from llmnas.errors import UserError
from llmnas.runs.events import PauseEvent, now

log = logging.getLogger("llmnas")
CHECK_EVERY_S = 1.0  # a pause checks for Ctrl-C this often


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Grid:
    """Carbon intensity (gCO2/kWh) as a step function of time."""

    def __init__(self, rows: Sequence[tuple[float, float]]):
        if not rows:
            raise ValueError("a carbon forecast needs at least one row")
        self.times = [t for t, _ in rows]
        self.values = [v for _, v in rows]

    @classmethod
    def constant(cls, value: float) -> Grid:
        return cls([(0.0, value)])

    @classmethod
    def from_csv(cls, path: str | Path) -> Grid:
        """Read a forecast; a bad file is a UserError naming the line."""
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserError(f"--carbon-forecast {path}: cannot read it ({exc.strerror or exc})") from None
        rows: dict[float, float] = {}
        for number, row in enumerate(csv.reader(lines), 1):
            if not row or not "".join(row).strip() or (number == 1 and not _is_time(row[0])):
                continue  # blank, or a header
            try:
                if len(row) != 2:
                    raise ValueError(f"expected 2 columns (timestamp, gCO2/kWh), got {len(row)}")
                t, value = parse_time(row[0]), float(row[1])
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"intensity {row[1].strip()} is not a non-negative number")
                if t in rows:
                    raise ValueError(f"timestamp {row[0].strip()} appears twice")
            except ValueError as exc:
                raise UserError(f"--carbon-forecast {path} line {number}: {exc}") from None
            rows[t] = value
        if not rows:
            raise UserError(f"--carbon-forecast {path}: no rows of timestamp, gCO2/kWh")
        return cls(sorted(rows.items()))

    def at(self, t: float) -> float:
        return self.values[max(0, bisect.bisect_right(self.times, t) - 1)]

    def mean(self, start: float, end: float) -> float:
        """Mean intensity over [start, end] (the value at ``start`` for an empty interval)."""
        if end <= start:
            return self.at(start)
        total, t = 0.0, start
        for edge in self.times[bisect.bisect_right(self.times, start) :]:
            if edge >= end:
                break
            total += self.at(t) * (edge - t)
            t = edge
        total += self.at(t) * (end - t)
        return total / (end - start)

    def covers(self, start: float, end: float) -> bool:
        return len(self.times) > 1 and self.times[0] <= start and end <= self.times[-1]


def _is_time(text: str) -> bool:
    try:
        parse_time(text)
    except ValueError:
        return False
    return True


def plan(grid: Grid, start: float, deadline: float, round_s: float, rounds: int) -> float:
    """When the next round should start: cut the time to the deadline into round-long slots, take the
    ``rounds`` slots of lowest mean intensity (earlier first on ties), and start at the earliest of them,
    or at a change in the forecast just before it when a round from there is as green. With no slack (no
    more slots than rounds, or no estimate of a round's length) that is ``start``."""
    if round_s <= 0 or rounds <= 0:
        return start
    slots = int((deadline - start) // round_s)
    if slots <= rounds:
        return start
    cost = [grid.mean(start + j * round_s, start + (j + 1) * round_s) for j in range(slots)]
    first = min(sorted(range(slots), key=lambda j: (cost[j], j))[:rounds])
    at = start + first * round_s
    earlier = [t for t in grid.times if at - round_s < t < at and grid.mean(t, t + round_s) <= cost[first]]
    return earlier[0] if earlier else at


class CarbonPacer:
    """End-of-round listener for ``--carbon-forecast``: measures how long rounds take (the first round of
    a session runs at once, to measure one) and pauses before the next round until ``plan`` says to go.
    A pause is logged as a "pause" event and checks for Ctrl-C every CHECK_EVERY_S."""

    def __init__(self, grid: Grid, deadline: float, clock: Clock):
        self.grid, self.deadline, self.clock = grid, deadline, clock
        self.round_started = clock.now()
        self.durations: list[float] = []
        if deadline <= self.round_started:
            log.warning("the deadline %s has passed: rounds run without pausing", now(deadline))
        elif not grid.covers(self.round_started, deadline):
            log.warning("the carbon forecast does not cover the time from now to the deadline")

    def __call__(self, search) -> None:
        t = self.clock.now()
        self.durations.append(t - self.round_started)
        self.round_started = t
        if search.finished:
            return
        round_s = sum(self.durations) / len(self.durations)
        rounds = math.ceil((search.budget - search.proposed) / search.round_size)
        start = plan(self.grid, t, self.deadline, round_s, rounds)
        if start <= t:
            return
        now_g, then_g = self.grid.mean(t, t + round_s), self.grid.mean(start, start + round_s)
        reason = (
            f"carbon: pausing {start - t:.0f} s until {now(start)} ({then_g:.0f} gCO2/kWh instead of "
            f"{now_g:.0f} now; {rounds} round(s) left before the deadline {now(self.deadline)})"
        )
        log.warning("%s", reason)
        search.store.append(PauseEvent(time=now(t), until=now(start), seconds=start - t, reason=reason))
        while (left := start - self.clock.now()) > 0:
            search.stop.check()
            self.clock.sleep(min(left, CHECK_EVERY_S))
        self.round_started = self.clock.now()
