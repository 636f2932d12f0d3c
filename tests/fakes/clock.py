"""A simulated clock for carbon pacing: nothing waits for real.

Time starts at ``start`` and moves only in two ways: ``tick`` seconds each time the run reads it (the
work done between two readings, so rounds take simulated time) and at once by what ``sleep`` asks.
"""

from __future__ import annotations


class SimClock:
    def __init__(self, start: float, tick: float = 0.0):
        self.t, self.tick = float(start), tick
        self.slept = 0.0

    def now(self) -> float:
        self.t += self.tick
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds
