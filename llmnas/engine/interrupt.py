"""Ctrl-C at safe points: the first press sets a flag that the loop checks between steps (never inside
scoring or logging), the second stops at once. And the user's wall-time limit, checked between rounds."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait

log = logging.getLogger("llmnas")


class StopFlag:
    def __init__(self) -> None:
        self.raised = False

    def _on_sigint(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True
        log.warning("stopping: finished evaluations are kept, candidates in flight are dropped")

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Handle SIGINT while the block runs (main thread only; elsewhere Python's default holds)."""
        self.raised = False
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def check(self) -> None:
        """A safe point: raise KeyboardInterrupt if Ctrl-C was pressed."""
        if self.raised:
            raise KeyboardInterrupt

    def as_completed(self, futures: Iterable[Future]) -> Iterator[Future]:
        """Futures as they finish, checking for Ctrl-C every 0.2 s while waiting."""
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            yield from done
            if pending:
                self.check()


class TimeLimit:
    """End-of-round listener for ``--time-limit``: once ``seconds`` of wall time have passed since the
    session started, it stops the run at this round boundary (the state is saved; resume goes on). The
    user asked for wall time here: nothing that selects or rewards reads it."""

    def __init__(self, seconds: float, shown: str):
        self.deadline = time.monotonic() + seconds
        self.shown = shown

    def __call__(self, search) -> str | None:
        if search.finished or time.monotonic() < self.deadline:
            return None
        return f"time limit of {self.shown} reached; go on with: llmnas resume {search.store.folder}"
