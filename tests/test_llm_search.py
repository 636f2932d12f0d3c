"""A whole search driven by an OpenAI-compatible endpoint (the loopback fake): repair, faults, budgets."""

from __future__ import annotations

import json

import pytest
from conftest import logged
from fakes.openai_server import FakeOpenAI, error, ok

from llmnas.cli import main

QUICK = [
    "--data",
    "digits",
    "--max-samples",
    "400",
    "--steps",
    "40",
    "--workers",
    "2",
    "--llm-retries",
    "0",
    "--llm-timeout",
    "5",
    "--json",
]


def mlp(width: int) -> str:
    return (
        f"Sure! Here is an MLP.\n\n```python\nimport torch.nn as nn\n\n\ndef build_model(input_shape, num_classes):\n"
        f"    return nn.Sequential(nn.Flatten(), nn.Linear(64, {width}), nn.ReLU(), nn.Linear({width}, num_classes))\n"
        "```\nIt has few parameters."
    )


BROKEN_NAME = (
    "```python\nimport torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.f = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n\n    def forward(self, x):\n"
    "        return self.f(x)\n```"
)


def _run(tmp_path, server: FakeOpenAI, *extra: str, capsys) -> tuple[int, dict, list[dict]]:
    out = tmp_path / "run"
    status = main(
        [
            "search",
            "classify digits; under 20k parameters",
            *QUICK,
            "--llm",
            f"{server.url}#fake-coder",
            "--api-key",
            "sk-test",
            "--out",
            str(out),
            *extra,
        ]
    )
    printed = capsys.readouterr().out
    return status, (json.loads(printed) if printed.strip() else {}), logged(out)


@pytest.mark.sandbox
def test_llm_search_repairs_survives_faults_and_logs_usage(tmp_path, capsys):
    script = [
        ok("I cannot produce JSON today."),  # spec extraction: garbage -> the rule-based parser
        ok("Let me think about the architecture first. No code yet."),  # no code: goes back for repair
        ok(mlp(32)),  # the repair
        error(500, "upstream exploded"),  # a failed call is a failed proposal, not a crash
        ok(BROKEN_NAME),  # wrong class name: extraction adds build_model
    ]
    with FakeOpenAI(*script, default=ok(mlp(48))) as server:
        status, result, events = _run(tmp_path, server, "--budget", "4", capsys=capsys)
        prompts = server.user_prompts()
    assert status == 0
    proposals = [e for e in events if e["type"] == "proposal"]
    assert len(proposals) == 4
    assert proposals[0]["repairs"] == 1 and proposals[0]["stage"] is None
    assert proposals[1]["stage"] == "llm" and (
        "500" in proposals[1]["message"] or "exploded" in proposals[1]["message"]
    )
    assert any("build_model" in n or "Net" in n for n in proposals[2]["notes"])
    assert "no Python code" in prompts[2] or "Repair" in prompts[2] or "repair" in prompts[2].lower()
    calls = [e for e in events if e["type"] == "llm_call"]
    assert sum(c.get("prompt_tokens", 0) for c in calls) > 0 and any(not c["ok"] for c in calls)
    stats = result["stats"]
    assert stats["valid_first_try"] < stats["valid_after_repair"] <= stats["proposals"]
    assert stats["llm"]["calls"] == len(calls) and stats["llm"]["failures"] >= 1
    assert result["best"] is not None


@pytest.mark.sandbox
def test_token_budget_ends_the_run_cleanly_and_keeps_finished_work(tmp_path, capsys):
    with FakeOpenAI(ok("{}"), default=ok(mlp(40), prompt_tokens=400, completion_tokens=200)) as server:
        status, result, events = _run(
            tmp_path, server, "--budget", "20", "--max-tokens", "1500", capsys=capsys
        )
    assert status == 0
    assert any(e["type"] == "stopped" and "token budget" in e["reason"] for e in events)
    assert [e for e in events if e["type"] == "evaluation" and e["ok"]]
    assert len([e for e in events if e["type"] == "proposal"]) < 20


@pytest.mark.sandbox
def test_a_dead_endpoint_stops_the_run_and_resume_continues_once_it_answers(tmp_path, capsys):
    server = FakeOpenAI(ok("{}"), default=ok(mlp(24)))  # the port is bound, but nothing answers yet
    out = tmp_path / "run"
    argv = ["classify digits; under 20k parameters", *QUICK, "--llm-timeout", "1", "--budget", "4"]
    status = main(["search", *argv, "--llm", f"{server.url}#m", "--out", str(out)])
    assert status == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert server.url in last and "3 calls in a row" in last and f"llmnas resume {out}" in last
    events = logged(out)
    assert [e["stage"] for e in events if e["type"] == "proposal"] == ["llm", "llm"]
    assert events[-1]["type"] == "stopped" and server.url in events[-1]["reason"]
    with server:  # the endpoint is back
        assert main(["resume", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["best"] is not None and result["stats"]["duplicates"] >= 1  # the fake answers one model


def test_bad_credentials_stop_at_once(tmp_path, capsys):
    with FakeOpenAI(default=error(401, "Incorrect API key provided")) as server:
        argv = ["classify digits; under 20k parameters", *QUICK, "--llm", f"{server.url}#m"]
        status = main(["search", *argv, "--out", str(tmp_path / "run")])
        assert status == 1 and len(server.requests) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "401" in err[0] and "credentials" in err[0]


@pytest.mark.sandbox
def test_resume_replays_recorded_replies_instead_of_asking_again(tmp_path, capsys):
    with FakeOpenAI(ok("{}"), default=ok(mlp(24))) as server:
        status, _, _ = _run(tmp_path, server, "--budget", "2", capsys=capsys)
        asked = len(server.requests)
    assert status == 0
    # Forget the checkpoint: the whole run is replayed from the log; a model that is now down is not needed.
    before = logged(tmp_path / "run")
    (tmp_path / "run" / "state.json").unlink()
    assert main(["resume", str(tmp_path / "run"), "--json", "--api-key", "sk-test"]) == 0
    after = logged(tmp_path / "run")[len(before) :]
    assert not [
        e for e in after if e["type"] in ("llm_call", "llm_reply", "evaluation")
    ]  # nothing asked or redone
    replies = [e for e in before if e["type"] == "llm_reply"]
    assert len(replies) == asked - 1  # every proposal reply was recorded once (the spec call is not replayed)


@pytest.mark.sandbox
def test_test_accuracy_never_reaches_a_prompt_or_a_trace(tmp_path, capsys):
    """Test accuracy is reported only: no prompt the model was sent, no trace exported for fine-tuning,
    holds it, while validation metrics of parents do reach mutation prompts (so the scan is not vacuous)."""
    replies = [ok("{}"), *(ok(mlp(w)) for w in (8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52))]
    with FakeOpenAI(*replies, default=ok(mlp(60))) as server:
        status, _, events = _run(tmp_path, server, "--budget", "12", capsys=capsys)
        prompts = server.user_prompts()
    assert status == 0
    tests = {e["metrics"]["test_acc"] for e in events if e["type"] == "evaluation" and e["ok"]}
    assert tests, "no candidate passed: nothing to leak"
    assert main(["traces", str(tmp_path / "run"), "--out", str(tmp_path / "t.jsonl")]) == 0
    traces = (tmp_path / "t.jsonl").read_text()
    for text in [*prompts, traces]:
        assert "test_acc" not in text and "test acc" not in text.lower()
    assert any("val_acc=" in p for p in prompts), "no prompt showed a parent's metrics"
    for row in map(json.loads, traces.splitlines()):
        assert not any(key.startswith("test") for key in row)
