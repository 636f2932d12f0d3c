"""Refinement sessions: new words re-derive the spec, tighter limits reshape the archive, the run goes on."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import logged

from llmnas.cli import main
from llmnas.config import RunConfig
from llmnas.engine.loop import archive_for
from llmnas.metrics import rank_key
from llmnas.results.read import leaderboard
from llmnas.run import refine, resume, start
from llmnas.task.spec import TaskSpec
from sandbox.protocol import TrainConfig

# Module fixtures that start a search (see conftest): the tests using them are marked sandbox.
SANDBOX_FIXTURES = {"searched"}

QUIET = {"progress": False, "announce": lambda _: None}


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """One finished search per module; each test refines its own copy."""
    cfg = RunConfig(
        requirements="classify digits; under 20k parameters",
        data="digits",
        max_samples=500,
        budget=6,
        workers=2,
        seed=2,
        train=TrainConfig(max_steps=60),
    )
    return start(cfg, tmp_path_factory.mktemp("refine") / "run", **QUIET).run_dir


@pytest.fixture()
def run(searched: Path, tmp_path) -> Path:
    return Path(shutil.copytree(searched, tmp_path / "run"))


def _state(run: Path) -> dict:
    return json.loads((run / "state.json").read_text())


def test_refine_tightens_limits_keeps_archive_and_policy_and_continues(run: Path):
    before = _state(run)
    params_before = {r["candidate_id"]: r["params"] for r in leaderboard(run)}
    limit = sorted(params_before.values())[len(params_before) // 2]  # rules out about half the models
    result = refine(run, f"under {limit} parameters", budget=4, **QUIET)

    assert f"under {limit} parameters" in (run / "requirements.md").read_text()
    info = json.loads((run / "run.json").read_text())
    assert info["spec"]["max_params"] == limit and info["config"]["budget"] == 10
    after = _state(run)
    assert after["proposed"] == 10
    assert set(before["known"]) <= set(after["known"])  # nothing evaluated is forgotten
    assert sum(after["policy"]["count"].values()) > sum(
        before["policy"]["count"].values()
    )  # same policy, learning
    front = {e.candidate_id for e in result.front}
    assert front and all(e.metrics["params"] <= limit for e in result.front)
    over = {cid for cid, p in params_before.items() if p > limit}
    assert over and not (over & front)
    assert all(r["params"] <= limit for r in leaderboard(run))
    events = logged(run)
    assert [e["spec"]["max_params"] for e in events if e["type"] == "refine"] == [limit]


def test_interactive_refinement_reads_feedback_between_rounds(run: Path, monkeypatch, capsys):
    """The CLI in this process (a driver costs seconds to start), answered on its stdin."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("under 9000 parameters\n\nq\n"))
    status = main(["refine", str(run), "fewer than 15k parameters", "--budget", "8", "--interactive"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.count("Feedback for the next round") == 3
    events = logged(run)
    assert [e["spec"]["max_params"] for e in events if e["type"] == "refine"] == [15_000, 9_000]
    assert events[-1]["type"] == "stopped" or any(e.get("reason") == "stopped by the user" for e in events)
    refined_at = next(i for i, e in enumerate(events) if e["type"] == "refine")
    assert sum(e["type"] == "round" for e in events[refined_at:]) == 3  # three rounds, then "q"
    refunded = _state(run)["stats"]["refunded"]  # over the new limit before training: not counted
    assert 6 + 3 * 2 - refunded <= _state(run)["proposed"] <= 6 + 3 * 2
    assert all(r["params"] <= 9_000 for r in leaderboard(run))


def test_refine_refuses_empty_words_without_touching_the_run(run: Path):
    text = (run / "requirements.md").read_text()
    with pytest.raises(ValueError, match="empty"):
        refine(run, "   ", **QUIET)
    assert (run / "requirements.md").read_text() == text


def test_raised_limit_scales_the_front_up_first(run: Path):
    """'now under 50k parameters' after a 20k run: the Pareto front's members, best first, are compound
    scaled (operator "scale") before anything else is proposed; the queue survives a stop and resume."""
    state = _state(run)
    archive = archive_for(TaskSpec(max_params=20_000))
    archive.load_state_dict(state["archive"])
    front = [e.candidate_id for e in sorted(archive.front(), key=lambda e: rank_key(e.metrics))]
    params = {e.candidate_id: e.metrics["params"] for e in archive.all_entries}
    assert len(front) >= 2
    refine(run, "now under 50k parameters", budget=1, **QUIET)
    assert _state(run)["to_scale"] == front[1:]
    resume(run, budget=state["proposed"] + len(front), **QUIET)

    events = logged(run)
    refined_at = next(i for i, e in enumerate(events) if e["type"] == "refine")
    proposals = [e for e in events[refined_at:] if e["type"] == "proposal"]
    assert [e["operator"] for e in proposals[: len(front)]] == ["scale"] * len(front)
    assert [e["parents"] for e in proposals[: len(front)]] == [[cid] for cid in front]
    scaled = {e["candidate_id"]: e["parents"][0] for e in proposals if e["candidate_id"] and not e["stage"]}
    assert scaled, [e["message"] for e in proposals]
    done = {e["candidate_id"]: e for e in events[refined_at:] if e["type"] == "evaluation"}
    for cid, parent in scaled.items():
        assert done[cid]["ok"], done[cid]["message"]
        assert params[parent] < done[cid]["metrics"]["params"] <= 50_000
    assert _state(run)["to_scale"] == []


def test_a_refinement_that_changes_priorities_changes_the_model_handed_back_at_once(run: Path):
    rows = leaderboard(run)
    best_score = max(r["val_acc"] for r in rows)
    assert rows[0]["val_acc"] == best_score  # before: the best validation score
    chosen_then = min(r["params"] for r in rows if r["val_acc"] >= best_score - 0.05)
    refine(run, "size matters more than accuracy now; within 5 points is fine", budget=6, **QUIET)
    rows = leaderboard(run)
    near = [r for r in rows if r["val_acc"] >= best_score - 0.05]  # "within 5 points"
    assert rows[0]["params"] == min(r["params"] for r in near)  # the smallest within the tolerance
    exported = json.loads((run / "best" / "metrics.json").read_text())
    assert exported["candidate"] == rows[0]["candidate_id"]  # best/ follows at once, no new round needed
    spec = json.loads((run / "run.json").read_text())["spec"]
    assert spec["priorities"] == ["size", "quality"] and spec["tolerance"] == 0.05
    assert spec["target_params"] == max(1, chosen_then // 2)  # half the model the new words chose then
