"""Failures that must end cleanly: one line, the documented exit status, nothing recorded lost, resumable.

Exit statuses: 0 success, 1 nothing passed or the run could not go on, 2 bad input, 130 Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import logged, wait_until

from llmnas.cli import main
from llmnas.errors import RunFailed
from llmnas.runs.events import ProposalEvent, RoundEvent, replay
from llmnas.runs.store import RunStore

REQ = "classify digits; under 20k parameters"
QUICK = ["--data", "digits", "--max-samples", "300", "--workers", "2", "--steps", "40", "--seed", "2"]
NOT_ROOT = "mounting a small tmpfs needs root"


def _llmnas(*args: str, cwd: Path) -> subprocess.Popen:
    """The installed entry point, as a user starts it (its own session, as a terminal would give it)."""
    code = "from llmnas.console import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def _loading_dependencies(pid: int) -> bool:
    """Whether process ``pid`` has begun to load numpy or torch: llmnas's own start-up, where Ctrl-C is
    handled (llmnas/console.py takes it before importing anything), and before a run folder exists."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "/numpy/" in maps or "/torch/" in maps


@pytest.mark.sandbox
@pytest.mark.parametrize("moment", ["importing", "starting the sandbox"])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path, moment):
    proc = _llmnas("search", REQ, *QUICK, "--budget", "4", "--out", str(tmp_path / "run"), cwd=tmp_path)
    if moment == "importing":
        wait_until(lambda: _loading_dependencies(proc.pid), "llmnas to import its dependencies", 30)
        assert not (tmp_path / "run").exists()
    else:  # the run folder exists, the zygotes are starting: nothing evaluated yet
        wait_until((tmp_path / "run" / "run.json").exists, "the run folder", 60, every_s=0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    if (tmp_path / "run" / "run.json").exists():  # resumable from wherever it stopped
        assert main(["resume", str(tmp_path / "run"), "--json"]) == 0


@pytest.mark.sandbox
@pytest.mark.long
def test_a_run_folder_deleted_mid_run_stops_with_one_line(tmp_path):
    proc = _llmnas("search", REQ, *QUICK, "--budget", "40", "--out", str(tmp_path / "run"), cwd=tmp_path)
    events = tmp_path / "run" / "events.jsonl"
    wait_until(lambda: events.exists() and '"evaluation"' in events.read_text(), "a first evaluation", 120)
    while (tmp_path / "run").exists():  # as `rm -rf` would, again while the run still writes into it
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if line.startswith("llmnas")]
    assert len(lines) == 1 and ("deleted" in lines[0] or "is gone" in lines[0]), err
    assert "Traceback" not in err


def test_an_unwritable_output_is_bad_input(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["search", REQ, *QUICK, "--budget", "2", "--out", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the run folder" in err[0] and "--out" in err[0]


def test_a_full_disk_keeps_what_was_recorded(tmp_path):
    store = RunStore.create(tmp_path / "r", {}, "x")
    store.append(ProposalEvent(round=0, slot=0, operator="generate"))
    store.close()
    kept = (tmp_path / "r" / "events.jsonl").read_text()
    os.replace(tmp_path / "r" / "events.jsonl", tmp_path / "kept.jsonl")
    os.symlink("/dev/full", tmp_path / "r" / "events.jsonl")  # every write: ENOSPC
    store = RunStore.open(tmp_path / "r")
    with pytest.raises(RunFailed, match="No space left on device.*llmnas resume"):
        store.append(RoundEvent(round=1, proposed=1))
    assert (tmp_path / "kept.jsonl").read_text() == kept


@pytest.mark.sandbox
@pytest.mark.long
@pytest.mark.skipif(os.geteuid() != 0, reason=NOT_ROOT)
def test_a_disk_that_fills_mid_run_stops_with_one_line_and_resumes(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "llmnas-test", str(small)], check=True)
    try:
        proc = _llmnas("search", REQ, *QUICK, "--budget", "40", "--out", str(small / "run"), cwd=tmp_path)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        lines = [line for line in err.splitlines() if line.startswith("llmnas")]
        assert len(lines) == 1 and "No space left on device" in lines[0] and "llmnas resume" in lines[0], err
        before = replay(small / "run" / "events.jsonl")
        assert before.of(ProposalEvent) and len(before.problems) <= 1  # at most the line cut by the full disk
        shutil.copytree(small / "run", tmp_path / "run")  # room again
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert main(["resume", str(tmp_path / "run"), "--budget", str(len(before.of(RoundEvent)) * 2 + 2)]) == 0
    assert len(logged(tmp_path / "run")) > len(before.events)
