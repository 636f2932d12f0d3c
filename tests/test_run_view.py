"""RunView, the one reading of a run's log: its projection of a hand-written events.jsonl, and every
reader (show's leaderboard, the report's candidates, traces, resume, the model's budgets and replayed
replies) giving the same answer as the view. Then the folder's two typed records, run.json and
state.json, old ones included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from llmnas.config import RunConfig
from llmnas.engine.loop import Search
from llmnas.errors import UserError
from llmnas.finetune.traces import collect_traces
from llmnas.llm.chat import Completion
from llmnas.llm.replay import prompt_key
from llmnas.llm.usage import Usage
from llmnas.propose.offline import OfflineProposer
from llmnas.results.read import leaderboard, load_run, summary
from llmnas.run import make_proposer
from llmnas.runs.records import Checkpoint, RunRecord
from llmnas.runs.store import RunStore
from llmnas.runs.view import FAILED, OK, PENDING, REJECTED, RunView
from llmnas.task.requirements import parse_requirements
from llmnas.task.spec import TaskSpec

REQ = "classify 8x8 digits into 10 classes; under 20k parameters"
ASK = [{"role": "user", "content": "a model please"}]
T = "2026-01-01T00:00:00+00:00"  # events read at different moments must not differ by a default time


def proposal(round_: int, slot: int, cid: str | None, **fields) -> dict:
    return {
        "type": "proposal",
        "round": round_,
        "slot": slot,
        "candidate_id": cid,
        "operator": "generate",
    } | fields


def evaluation(round_: int, cid: str, ok: bool = True, val_acc: float = 0.9, **fields) -> dict:
    metrics = {"val_acc": val_acc, "params": 1000, "latency_ms": 0.1} if ok else {}
    return {"type": "evaluation", "round": round_, "candidate_id": cid, "ok": ok, "metrics": metrics,
            "reward": val_acc if ok else -0.3, "stage": None if ok else "crash"} | fields  # fmt: skip


def lines(spec: dict) -> list[str]:
    """Two rounds, one of them replayed after a resume; line numbers matter (see the skipped ones)."""
    events = [
        proposal(0, 0, "aaa", round_size=3),  # 1
        proposal(0, 1, "bbb", round_size=3),  # 2
        proposal(0, 2, None, stage="static", message="import of 'os' is not allowed", round_size=3),
        evaluation(0, "aaa", val_acc=0.90),  # 4
        evaluation(0, "bbb", ok=False, message="exploded"),  # 5
        proposal(0, 1, "bbb", round_size=4, operator="mutate"),  # 6: the round replayed, logged again
        proposal(0, 3, "aaa", stage="duplicate", message="same code as candidate aaa", round_size=4),
        evaluation(0, "bbb", val_acc=0.95),  # 8: evaluated again: the latest wins
        {
            "type": "round",
            "round": 1,
            "proposed": 4,
            "best": "bbb",
            "policy": {"operator": {"generate": 1.0}},
        },
        {
            "type": "llm_call",
            "model": "m",
            "ok": True,
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "cost_usd": 0.25,
        },  # fmt: skip
        {"type": "llm_call", "model": "m", "ok": False, "error": "timed out"},
        {"type": "llm_reply", "key": prompt_key(ASK, 0.7, 1, 2048), "texts": ["recorded"]},  # 12
    ]
    out = [json.dumps({"time": T} | e) for e in events]
    out.append('{"type": "teleport", "round": 1}')  # 13: an unknown kind
    out += [
        json.dumps(proposal(1, 0, "ccc", round_size=2, time=T)),  # 14: in flight
        json.dumps(
            proposal(1, 1, "aaa", round_size=2, time=T)
        ),  # 15: aaa again, live: slot 0 has its evaluation
        json.dumps(evaluation(1, "zzz", val_acc=0.80, time=T)),  # 16: its proposal line was lost
        json.dumps({"type": "refine", "time": T, "text": "smaller", "spec": spec | {"max_params": 5000}}),
        json.dumps({"type": "stopped", "time": T, "reason": "LLM token budget spent"}),
        json.dumps(evaluation(1, "ccc", time=T))[:40],  # 19: cut short by a kill
    ]
    return out


@pytest.fixture
def run(tmp_path: Path, digits) -> tuple[Path, RunConfig]:
    cfg = RunConfig(requirements=REQ, data="digits", seed=1)
    spec = parse_requirements(REQ).resolve(
        input_shape=digits.input_shape, num_classes=digits.num_classes, modality=digits.modality
    )
    info = {"config": cfg.model_dump(mode="json"), "spec": spec.model_dump(mode="json")}
    store = RunStore.create(tmp_path / "run", info, REQ)
    (store.paths.events).write_text("\n".join(lines(info["spec"])))
    return store.folder, cfg


def test_the_projection_of_a_hand_written_log(run):
    view = RunView.read(run[0])
    assert [(t.round, t.slot, t.candidate_id, t.status) for t in view.trials] == [
        (0, 0, "aaa", OK),
        (0, 1, "bbb", OK),  # the latest evaluation wins
        (0, 2, None, REJECTED),
        (0, 3, "aaa", REJECTED),
        (1, 0, "ccc", PENDING),  # its evaluation's line was cut short
        (1, 1, "aaa", PENDING),  # aaa's evaluation belongs to the first proposal that sent it
        (1, None, "zzz", OK),  # the orphan evaluation comes last
    ]
    a, b, static, duplicate, *_ = view.trials
    assert b.proposal.operator == "mutate" and b.reward == 0.95 and b.evaluation.metrics.val_acc == 0.95
    assert (static.stage, static.reward) == ("static", -0.8)  # the stage's reward when none was logged
    assert duplicate.message == "same code as candidate aaa"
    assert list(view.evaluations) == ["aaa", "bbb", "zzz"] and view.evaluations["bbb"].ok
    assert dict(view.round_sizes) == {0: 4, 1: 2}  # the last size logged for each round
    assert view.logged == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)}
    assert view.usage == Usage(calls=2, prompt_tokens=120, completion_tokens=30, failures=1, cost_usd=0.25)
    assert view.replies == ((prompt_key(ASK, 0.7, 1, 2048), ("recorded",)),)
    assert (
        view.spec({"max_params": 20000})["max_params"] == 5000 and view.spec({}) is view.refinements[-1].spec
    )
    assert [s.reason for s in view.stopped] == ["LLM token budget spent"] and len(view.rounds) == 1
    assert view.last_time == T
    assert [s.line for s in view.skipped] == [13, 19]
    assert "type" in view.skipped[0].reason and "not JSON" in view.skipped[1].reason
    assert view.problems[0].startswith("events.jsonl line 13 skipped: ")


def test_an_empty_or_missing_log_is_an_empty_view(tmp_path: Path):
    view = RunView.read(tmp_path)
    assert view.trials == () and not view.evaluations and view.usage == Usage() and view.last_time is None
    assert view.spec({"max_params": 1}) == {"max_params": 1}


def test_every_reader_agrees_with_the_view(run, digits):
    folder, cfg = run
    view = RunView.read(folder)
    evaluated = set(view.evaluations)

    # show and the report: one candidate per trial, the same verdicts, and the same evaluated set
    data = load_run(folder)
    assert [(c.candidate_id, c.round, c.slot) for c in data.candidates] == [
        (t.candidate_id, t.round, t.slot) for t in view.trials
    ]
    assert [c.status for c in data.candidates] == [
        FAILED if t.status == REJECTED else t.status for t in view.trials
    ]
    assert [c.reward for c in data.candidates] == [t.reward for t in view.trials]
    assert {c.candidate_id for c in data.candidates if c.evaluated} == evaluated
    assert data.spec["max_params"] == 5000 and summary(data)["evaluated"] == len(evaluated)
    passing = {cid for cid, e in view.evaluations.items() if e.ok}
    assert {r["candidate_id"] for r in leaderboard(folder)} == passing

    # traces: the trials that have a proposal, with the same statuses and rewards
    traces = collect_traces(folder)
    with_proposal = [t for t in view.trials if t.proposal is not None]
    assert [(x.round, x.slot, x.status, x.reward) for x in traces] == [
        (t.round, t.slot, t.status, t.reward) for t in with_proposal
    ]

    # resume: the search replays against the same log
    store = RunStore.open(folder)
    spec = data.task_spec
    search = Search(cfg, spec, digits, OfflineProposer(spec.modality, cfg.seed), None, store, progress=False)
    assert search.evaluator.done == dict(view.evaluations) and set(search.evaluator.done) == evaluated
    assert search._logged == view.logged and dict(search._sizes) == dict(view.round_sizes)

    # the model's budgets carry over and a recorded reply is served again, never asked
    class Down:
        name = "fake"

        def complete(self, *args, **kwargs) -> list[Completion]:
            raise AssertionError("a recorded reply was asked again")

    proposer = make_proposer(cfg, spec, store, Down(), view)
    assert proposer.chat.chat.usage == view.usage
    assert [c.text for c in proposer.chat.complete(ASK, temperature=0.7)] == ["recorded"]
    store.close()


# ---------------------------------------------------------------- run.json and state.json, typed


def test_an_older_run_json_loads_and_keeps_what_it_does_not_know(tmp_path: Path):
    folder = tmp_path / "old"
    folder.mkdir()
    old = {"config": {"data": "digits"}, "spec": {"max_params": 100, "notes": ["fast"], "target_mae": 2.0},
           "seed": 3, "created": "2025-01-01 10:00:00.5", "legacy": {"x": 1}}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(old))
    store = RunStore.open(folder)
    record = store.record
    assert (record.seed, record.created, record.versions, record.model_extra) == (
        3,
        old["created"],
        {},
        {"legacy": {"x": 1}},
    )
    spec = TaskSpec.model_validate(record.spec)  # the spec's own migration
    assert spec.not_understood == ("fast",) and spec.floors == {"mae": 2.0}
    store.update_run_info(config={"data": "iris"})
    assert json.loads((folder / "run.json").read_text()) == old | {"config": {"data": "iris"}, "versions": {}}


@pytest.mark.parametrize(
    ("text", "says"),
    [("{", "is not valid JSON"), ("[1]", "does not hold a JSON object"), ('{"seed": "x"}', "seed: ")],
)
def test_a_broken_run_json_says_why(tmp_path: Path, text: str, says: str):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(UserError, match=says):
        RunRecord.read(tmp_path / "run.json")


def test_a_checkpoint_round_trips_and_an_older_one_loads(tmp_path: Path):
    store = RunStore.create(tmp_path / "run", {"seed": 0}, REQ)
    rng = np.random.default_rng(7)
    rng.random(3)
    state = Checkpoint(round=2, proposed=5, rng=rng.bit_generator.state, policy={}, archive={},
                       proposer={}, known=["aaa"], decisions={"aaa": [1, 2]}, failures=[],
                       stats={"proposals": 5})  # fmt: skip
    store.save_state(state, b"blob")
    back, blob = store.load_state()
    assert back == state.model_copy(update={"blob": "state.safetensors.2"}) and blob == b"blob"
    again = np.random.default_rng()
    again.bit_generator.state = back.rng
    assert again.random() == rng.random()
    older = json.loads(store.paths.state.read_text())
    for key in ("spec", "to_scale", "scaled", "best_id"):
        del older[key]  # written before these existed
    store.paths.state.write_text(json.dumps(older))
    assert store.load_state()[0] == back
    with pytest.raises(ValidationError, match="blob"):
        Checkpoint.model_validate(older | {"blob": "../../elsewhere"})
