"""Exact resume after kill -9 (same-seed determinism is in test_determinism.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import logged, wait_until

from llmnas.cli import main
from llmnas.errors import UserError
from llmnas.runs.events import ProposalEvent, RoundEvent
from llmnas.runs.store import RunStore

REQ = "classify digits; under 20k parameters"
COMMON = ["--data", "digits", "--max-samples", "300", "--workers", "2", "--steps", "40", "--seed", "5"]


def _trajectory(run: Path) -> list[tuple]:
    """What the search decided and measured, without wall-clock noise."""
    out = []
    for e in logged(run):
        if e["type"] == "proposal":
            out.append(
                (
                    "proposal",
                    e["round"],
                    e["slot"],
                    e["candidate_id"],
                    e["operator"],
                    e["variant"],
                    e["stage"],
                )
            )
    evaluations = {e["candidate_id"]: e for e in logged(run) if e["type"] == "evaluation"}
    for cid in sorted(evaluations):
        e = evaluations[cid]
        out.append(
            ("evaluation", cid, e["ok"], e["stage"], e["metrics"].get("val_acc"), e["metrics"].get("params"))
        )
    return out


def _learning_state(run: Path) -> dict:
    state = json.loads((run / "state.json").read_text())
    return {k: state[k] for k in ("round", "proposed", "rng", "policy", "known", "decisions", "best_id")} | {
        "archive_ids": sorted(e["candidate_id"] for e in state["archive"]["entries"])
        if "entries" in state["archive"]
        else state["archive"]
    }


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llmnas.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.sandbox
@pytest.mark.long
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    """A run killed with SIGKILL after 3 evaluations (rounds of 2: in the middle of the second round, its
    other candidate in flight or finished) and resumed ends as the run that was never interrupted (run in
    this process while the resume runs). bench/stress.py kills drivers at other moments."""
    budget, kill_after = "6", 3
    run = tmp_path / "run"
    victim = _cli("search", REQ, *COMMON, "--budget", budget, "--out", str(run), cwd=tmp_path)
    events = run / "events.jsonl"
    done = lambda: events.exists() and events.read_text().count('"type": "evaluation"') >= kill_after  # noqa: E731
    wait_until(done, f"{kill_after} evaluations", 120)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    before = [e for e in logged(run) if e["type"] == "evaluation"]
    assert 0 < len(before) < int(budget)

    resumed = _cli("resume", str(run), cwd=tmp_path)
    assert main(["search", REQ, *COMMON, "--budget", budget, "--out", str(tmp_path / "ref")]) == 0
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out

    after = [e for e in logged(run) if e["type"] == "evaluation"]
    ids = [e["candidate_id"] for e in after]
    assert len(ids) == len(set(ids)), "a finished evaluation was run again"
    assert {e["candidate_id"] for e in before} <= set(ids), "a finished evaluation was lost"
    assert _trajectory(run) == _trajectory(tmp_path / "ref")
    assert _learning_state(run) == _learning_state(tmp_path / "ref")


def test_a_line_cut_by_a_kill_is_ignored_and_repaired(tmp_path):
    store = RunStore.create(tmp_path / "r", {"seed": 0}, "x")
    store.append(ProposalEvent(round=0, slot=0, operator="generate"))
    store.close()
    with open(tmp_path / "r" / "events.jsonl", "a") as f:
        f.write('{"type": "evaluation", "candid')
    store = RunStore.open(tmp_path / "r")
    assert [e["type"] for e in logged(store.folder)] == ["proposal"]
    store.append(RoundEvent(round=1, proposed=1))
    assert [e["type"] for e in logged(store.folder)] == ["proposal", "round"]
    store.close()


def test_a_new_run_refuses_to_overwrite_an_existing_one(tmp_path):
    RunStore.create(tmp_path / "r", {}, "x").append(ProposalEvent(round=0, slot=0, operator="generate"))
    with pytest.raises(UserError, match="llmnas resume"):
        RunStore.create(tmp_path / "r", {}, "x")


@pytest.mark.sandbox
@pytest.mark.long
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmnas.cli",
            "search",
            REQ,
            *COMMON,
            "--budget",
            "40",
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events = tmp_path / "run" / "events.jsonl"
    wait_until(lambda: events.exists() and '"evaluation"' in events.read_text(), "a first evaluation", 120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"Resume with: llmnas resume {tmp_path / 'run'}" in err and "Traceback" not in err
    assert logged(tmp_path / "run")  # what finished is on disk


@pytest.mark.sandbox
def test_a_time_limit_ends_the_run_at_a_round_boundary_and_resume_goes_on(tmp_path, capsys):
    run = tmp_path / "run"
    # A limit that no round can stay under (a round trains two candidates): a warm sandbox finishes a
    # round of this small search in well under a second.
    assert main(["search", REQ, *COMMON, "--budget", "20", "--time-limit", "0.01s", "--out", str(run)]) == 0
    events = logged(run)
    stops = [e["reason"] for e in events if e["type"] == "stopped"]
    assert (
        len(stops) == 1 and "time limit of 0.01s reached" in stops[0] and f"llmnas resume {run}" in stops[0]
    )
    assert [e["proposed"] for e in events if e["type"] == "round"] == [2]  # one round of two workers
    assert main(["resume", str(run)]) == 0  # a session of its own: one more round
    after = logged(run)
    assert [e["proposed"] for e in after if e["type"] == "round"] == [2, 4]
    assert sum(e["type"] == "stopped" for e in after) == 2
    capsys.readouterr()
    assert main(["search", REQ, "--time-limit", "soon", "--out", str(tmp_path / "bad")]) == 2
    assert "'soon' is not a duration" in capsys.readouterr().err and not (tmp_path / "bad").exists()
