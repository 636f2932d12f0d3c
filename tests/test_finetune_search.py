"""--llm hf:PATH --finetune-every K wired through a real search: traces kept, exported, tuner consulted."""

from __future__ import annotations

import json

import pytest
from conftest import logged
from fakes.tiny_coder import build_tiny_coder

from llmnas.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.mark.sandbox
def test_hf_search_with_finetuning_keeps_traces_and_exports_them(tmp_path, capsys):
    model = build_tiny_coder(tmp_path / "coder")
    run = tmp_path / "run"
    status = main(
        [
            "search",
            "classify digits; under 20k parameters",
            "--data",
            "digits",
            "--max-samples",
            "300",
            "--steps",
            "20",
            "--workers",
            "2",
            "--budget",
            "2",
            "--repair-attempts",
            "0",
            "--llm",
            f"hf:{model}",
            "--finetune-every",
            "2",
            "--finetune-steps",
            "5",
            "--llm-max-tokens",
            "96",
            "--out",
            str(run),
            "--json",
        ]
    )
    assert status == 1  # a random model's proposals never pass: exit 1 says the search found nothing
    capsys.readouterr()
    proposals = [e for e in logged(run) if e["type"] == "proposal"]
    assert len(proposals) == 2
    rejected = [p for p in proposals if p["candidate_id"] is None]
    for p in rejected:  # a random model writes no valid code: its words are kept for fine-tuning anyway
        folder = run / "traces" / f"r{p['round']:04d}-s{p['slot']:03d}"
        assert (folder / "prompt.md").is_file() and (folder / "reply.md").is_file()
    assert main(["traces", str(run), "--out", str(tmp_path / "t.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["prompt"][0]["role"] == "system" and row["prompt"][1]["role"] == "user"
        assert row["completion"][0]["role"] == "assistant" and isinstance(row["reward"], float)


def test_finetuning_needs_a_local_model(capsys):
    assert main(["search", "classify", "--finetune-every", "4"]) == 2
    assert "(--finetune-every) needs a local model" in capsys.readouterr().err
