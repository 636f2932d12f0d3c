"""Pool folders of dead drivers are swept, and a live pool's folder never is, however the two interleave."""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path

from llmnas.execute import stale


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix=stale.PREFIX))


def test_a_pool_being_claimed_is_never_taken_for_a_dead_one(monkeypatch):
    """A sweep in another process may look at the folder at any moment of ``claim``: in particular just
    before the lock is taken. It must find no unlocked ``owner.lock`` then."""
    root, seen = _folder(), []
    real = fcntl.flock

    def flock_after_a_look(fd, op):
        if not seen:  # claim's own lock: a sweep looks first
            with stale._owner_gone(root) as gone:
                seen.append(gone)
        return real(fd, op)

    monkeypatch.setattr(stale.fcntl, "flock", flock_after_a_look)
    fd = stale.claim(root, range(0))
    monkeypatch.setattr(stale.fcntl, "flock", real)
    try:
        assert seen == [False]
        assert root not in stale.sweep_stale() and root.is_dir()
    finally:
        stale.release(fd)
    assert root in stale.sweep_stale() and not root.exists()  # released: its owner is gone


def test_a_sweep_holds_the_lock_while_it_works():
    """Two sweeps never work on one dead folder at once: the second sees it locked."""
    root = _folder()
    stale.release(stale.claim(root, range(0)))
    with stale._owner_gone(root) as first, stale._owner_gone(root) as second:
        assert (first, second) == (True, False)
    assert root in stale.sweep_stale()
