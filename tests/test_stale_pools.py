"""Pool folders of dead drivers are swept, and a live pool's folder never is, however the two interleave."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

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
    stale.sweep_stale()  # released, its owner gone: swept (here, or by a pool another xdist worker starts)
    assert not root.exists()


def test_a_sweep_holds_the_lock_while_it_works():
    """Two sweeps never work on one dead folder at once: the second sees it locked."""
    root = _folder()
    stale.release(stale.claim(root, range(0)))
    with stale._owner_gone(root) as first, stale._owner_gone(root) as second:
        assert (first, second) == (True, False)
    stale.sweep_stale()
    assert not root.exists()


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="candidate uids are used only when the driver runs as root"
)


@needs_root
def test_live_pools_hold_distinct_uid_blocks_and_a_dead_folders_block_stays_reserved():
    first, held = stale.reserve_uids(4)
    second, other = stale.reserve_uids(4)
    assert first and second and set(first).isdisjoint(second)
    stale.release(held)  # its driver dies: the block's lock goes, but its folder is not swept yet
    dead = _folder()
    stale.release(stale.claim(dead, first))
    try:
        for _ in range(5):  # a new pool never takes a block that a pool folder still names
            uids, fd = stale.reserve_uids(4)
            assert uids.start != first.start
            stale.release_uids(uids, fd)
    finally:
        stale.release_uids(second, other)
        stale.sweep_sandbox(dead)


@pytest.mark.sandbox
@needs_root
def test_a_sweep_kills_by_uid_only_when_no_live_pool_holds_the_block():
    uids, block = stale.reserve_uids(1)
    dead = _folder()
    stale.release(stale.claim(dead, uids))  # a dead folder naming a block a live pool now holds

    def sleeper() -> subprocess.Popen:
        return subprocess.Popen(["sleep", "30"], user=uids.start, cwd="/", start_new_session=True)

    live = sleeper()
    try:
        assert stale.sweep_sandbox(dead) and live.poll() is None  # the live pool's candidate survives
        stale.release_uids(uids, block)  # the live pool ends: its lock file goes with it
        again = _folder()
        stale.release(stale.claim(again, uids))
        stale.sweep_sandbox(again)  # the block is free: whatever still runs under it is the dead pool's
        assert live.wait(timeout=10) == -signal.SIGKILL
    finally:
        live.kill()


@needs_root
def test_a_uid_block_given_back_leaves_no_file_and_can_be_taken_again():
    uids, fd = stale.reserve_uids(2)
    path = stale._block_path(uids.start)
    assert stale._lock_block(uids.start) is None  # held
    stale.release_uids(uids, fd)
    assert not path.exists()
    again = stale._lock_block(uids.start)
    assert again is not None
    stale.release_uids(uids, again)
