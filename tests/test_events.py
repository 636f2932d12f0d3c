"""The run log's schema: every kind round-trips, runs written by 0.1 still load, bad lines are skipped
with their line number (never a crash of show, report or resume), and text from candidates is escaped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import logged

from llmnas.finetune.traces import collect_traces
from llmnas.llm import prompts
from llmnas.propose.base import Operator
from llmnas.report.html import render_report
from llmnas.results.read import leaderboard
from llmnas.run import resume
from llmnas.runs.events import (
    EvaluationEvent,
    FinetuneEvent,
    LLMCallEvent,
    LLMReplyEvent,
    Metrics,
    ProposalEvent,
    RefineEvent,
    StoppedEvent,
    dump,
    parse_line,
    replay,
)
from llmnas.runs.store import RunStore
from llmnas.safe_text import escape_controls

FIXTURES = Path(__file__).parent / "fixtures"
OLD_RUN = FIXTURES / "run_v0_1"  # written by llmnas 0.1 (before the typed log): 4 candidates, 2 rounds


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    return run


def test_every_kind_written_by_0_1_still_parses():
    kinds = [type(parse_line(line)) for line in (FIXTURES / "events_v0_1.jsonl").read_text().splitlines()]
    assert kinds == [
        LLMCallEvent,
        LLMCallEvent,
        LLMReplyEvent,
        RefineEvent,
        FinetuneEvent,
        FinetuneEvent,
        StoppedEvent,
        ProposalEvent,
    ]
    tuned = parse_line((FIXTURES / "events_v0_1.jsonl").read_text().splitlines()[4])
    assert tuned.stats["loss_after"] == 0.9 and tuned.adapter == "adapters/adapter-001"


def test_operators_are_an_enum_read_and_written_as_plain_strings():
    line = '{"type": "proposal", "round": 0, "slot": 0, "operator": "mutate"}'
    event = parse_line(line)
    assert event.operator is Operator.mutate
    assert json.loads(dump(event))["operator"] == "mutate" and '"operator": "mutate"' in dump(event)
    with pytest.raises(ValueError, match="operator"):
        parse_line(line.replace("mutate", "fly"))


def test_a_run_written_by_0_1_loads_in_every_reader(old_run: Path):
    log = replay(old_run / "events.jsonl")
    assert not log.problems and len(log.of(EvaluationEvent)) == 4
    rows = leaderboard(old_run)
    assert rows and all(0 <= r["val_acc"] <= 1 for r in rows)
    assert len(collect_traces(old_run)) == 4
    assert "Skipped log lines" not in render_report(old_run).read_text()


@pytest.mark.sandbox
def test_a_run_written_by_0_1_resumes(old_run: Path):
    before = logged(old_run)
    result = resume(old_run, budget=6, progress=False, announce=lambda _: None)
    after = logged(old_run)
    assert after[: len(before)] == before, "the old log must stay as it was"
    assert sum(e["type"] == "proposal" for e in after) >= 6 and result.evaluations >= 4
    layers = next(e["layers"] for e in after if e["type"] == "sandbox")  # what held for this session
    assert {"netns", "ipcns", "seccomp", "cgroup", "tmpfs"} <= layers.keys()


BAD_LINES = {
    2: '{"type": "evaluation", "candid',  # cut short by a kill (not the last line)
    3: "not json at all",
    4: '{"type": "telemetry", "x": 1}',  # a kind nobody writes
    5: '{"type": "evaluation", "round": 0, "candidate_id": "aaaaaaaaaaaa", "ok": true, "reward": 0.5, '
    '"metrics": {"params": 1' + "0" * 400 + ', "val_acc": 0.9}}',
    6: '{"type": "evaluation", "round": 0, "candidate_id": "bbbbbbbbbbbb", "ok": true, "reward": 0.5, '
    '"metrics": {"params": 10, "latency_ms": -1.0, "val_acc": 0.9}}',
    7: '{"type": "evaluation", "round": 0, "candidate_id": "cccccccccccc", "ok": true, "reward": NaN, '
    '"metrics": {"params": 10, "val_acc": 0.9}}',
    8: '{"type": "evaluation", "round": 0, "candidate_id": "../../etc", "ok": true, "reward": 0.5}',
}


@pytest.mark.sandbox
def test_bad_lines_are_reported_by_number_and_skipped(old_run: Path):
    lines = (old_run / "events.jsonl").read_text().splitlines()
    for number, bad in sorted(BAD_LINES.items()):
        lines.insert(number - 1, bad)
    (old_run / "events.jsonl").write_text("\n".join(lines) + "\n")
    log = replay(old_run / "events.jsonl")
    assert [p.split(" skipped")[0] for p in log.problems] == [
        f"events.jsonl line {n}" for n in sorted(BAD_LINES)
    ]
    assert "params" in log.problems[3] and "latency_ms" in log.problems[4] and "reward" in log.problems[5]
    assert len(log.of(EvaluationEvent)) == 4  # the good ones are all there
    # show, report and resume go on
    assert leaderboard(old_run)
    page = render_report(old_run).read_text()
    assert "Skipped log lines" in page and "line 5 skipped" in page
    resume(old_run, budget=5, progress=False, announce=lambda _: None)
    assert logged(old_run)[-1]["type"] == "round" and logged(old_run)[-1]["proposed"] == 5


def test_metrics_are_bounded():
    assert Metrics(params=2**53, latency_ms=0.0).params == 2**53
    for bad in (
        {"params": 2**53 + 1},
        {"latency_ms": -1},
        {"flops": -5},
        {"val_acc": 1.5},
        {"final_loss": float("inf")},
    ):
        with pytest.raises(ValueError):
            Metrics(**bad)
    with pytest.raises(ValueError, match="finite"):
        Metrics(custom=float("nan"))


def test_text_from_candidates_is_escaped_everywhere_it_is_shown(tmp_path: Path):
    attack = "boom\x1b[2K\r\x1b[32mok val 1.0000\x1b]0;owned\x07\x9b"
    assert escape_controls(attack) == "boom\\x1b[2K\\x0d\\x1b[32mok val 1.0000\\x1b]0;owned\\x07\\x9b"
    assert escape_controls("line one\n\tline two") == "line one\n\tline two"
    store = RunStore.create(tmp_path / "r", {"spec": {}}, "x")
    store.append(
        EvaluationEvent(round=0, candidate_id="abc", ok=False, stage="crash", message=attack, reward=-0.3)
    )
    store.append(
        ProposalEvent(round=0, slot=1, operator="generate", stage="static", message=attack, notes=[attack])
    )
    store.close()
    raw = (tmp_path / "r" / "events.jsonl").read_text()
    assert "\x1b" not in raw and "\r" not in raw and "\x9b" not in raw
    text = prompts.render("repair", code=attack, stage="crash", message=attack, contract="c", spec="s")
    assert "\x1b" not in text and "\\x1b[2K" in text
    (tmp_path / "r" / "candidates" / "abc").mkdir()
    (tmp_path / "r" / "candidates" / "abc" / "stdout.txt").write_text(attack)  # what the candidate printed
    page = render_report(tmp_path / "r").read_text()
    assert "\x1b" not in page and "\x9b" not in page and "\\x1b[32mok val" in page


def test_every_line_the_store_writes_reads_back(tmp_path: Path):
    store = RunStore.create(tmp_path / "r", {}, "x")
    events = [parse_line(line) for line in (FIXTURES / "events_v0_1.jsonl").read_text().splitlines()]
    for e in events:
        store.append(e)
    store.close()
    back = replay(tmp_path / "r" / "events.jsonl")
    assert not back.problems and back.events == events
    assert json.loads((tmp_path / "r" / "events.jsonl").read_text().splitlines()[0])["type"] == "llm_call"
