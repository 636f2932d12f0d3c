"""Candidate text is bounded (issue 29, point 6): a size cap before any parsing, and the parse itself in a
limited child process, so that no text holds the driver for more than a few seconds or grows its memory.

Each case runs the driver's side in a fresh Python process (its peak RSS is the driver's; the parsing child
is another process) with an address-space cap, so that an unbounded parser fails here without taking the
machine's memory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from llmnas.candidate import bounded
from llmnas.candidate.checks import Checked, Rejection, check

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20

# The driver's side, run in a process of its own. It warms up first (the parsing child starts, libcst is
# imported), then makes one call and reports the verdict and the growth of its peak RSS.
DRIVER = r"""
import json, resource, sys

from llmnas.candidate.checks import check
from llmnas.llm.chat import Completion
from llmnas.propose.base import Action
from llmnas.propose.llm import LLMProposer
from llmnas.task.spec import TaskSpec

HEAD = "import torch.nn as nn\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(4, num_classes)\n"
# 60 KB of nested unary minus: libcst needs about 9 GB and 25 s for it
BOMB = HEAD + ("x = " + "-" * 2900 + "1\n") * 20
TEXTS = {
    "huge": HEAD + "X = 1\n" * 350_000,  # 2 MB
    "nesting": BOMB,
    "slow": HEAD + "x = a" + "[0]" * 2900 + "\n",  # 9 KB that libcst takes seconds to analyse
}


class Stub:
    name = "stub"

    def __init__(self, text):
        self.text = text

    def complete(self, messages, *, temperature, n=1, max_tokens=2048):
        return [Completion(self.text)]


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


kind = sys.argv[1]
check(HEAD)
if kind.startswith("reply-"):
    text = "Here it is:\n```python\n" + TEXTS[kind[6:]] + "```\n"
    proposer = LLMProposer(Stub("```python\n" + HEAD + "```\n"))
    proposer.propose(Action("generate"), [], TaskSpec(text="t"), None)  # warm
    proposer.chat = Stub(text)
    call = lambda: proposer.propose(Action("generate"), [], TaskSpec(text="t"), None)
else:
    text = TEXTS[kind]
    call = lambda: check(text)
before = peak()
verdict = call()
grown = peak() - before
after = check(HEAD)  # the driver goes on: a normal candidate is checked as before
print(json.dumps({
    "stage": verdict.stage,
    "message": verdict.message,
    "grown": grown,
    "still_works": type(after).__name__ == "Checked",
}))
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def drive(kind: str) -> dict:
    """The driver's verdict on one hostile text and its RSS growth; a driver held for 20 s fails."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, kind],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind}: the driver was held for more than 20 s")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and len(message) < 300


@pytest.mark.sandbox
def test_a_2mb_candidate_is_refused_before_it_is_parsed():
    out = drive("huge")
    assert out["stage"] == "static"
    assert out["message"].startswith("candidate is 2,0") and "the limit is 200 KB" in out["message"]
    assert out["grown"] < 50 * MB and out["still_works"], out


@pytest.mark.sandbox
def test_nesting_that_explodes_the_parser_is_refused_without_the_driver_growing():
    out = drive("nesting")
    assert out["stage"] == "static" and one_line(out["message"]), out
    assert out["grown"] < 50 * MB and out["still_works"], out


@pytest.mark.sandbox
def test_a_parse_that_runs_long_is_stopped_at_the_time_limit():
    out = drive("slow")
    assert out["stage"] == "static" and one_line(out["message"]), out
    assert f"took more than {bounded.TIME_LIMIT_S:g} s" in out["message"]
    assert out["grown"] < 50 * MB and out["still_works"]


@pytest.mark.sandbox
def test_a_2mb_reply_is_refused_before_extraction():
    out = drive("reply-huge")
    assert out["stage"] == "extract" and one_line(out["message"]), out
    assert out["message"].startswith("the reply is 2,0") and "the limit is 800 KB" in out["message"]
    assert out["grown"] < 50 * MB, out


@pytest.mark.sandbox
def test_a_reply_whose_code_explodes_the_parser_is_refused_in_the_child():
    out = drive("reply-nesting")
    assert out["stage"] == "extract" and one_line(out["message"]), out
    assert out["grown"] < 50 * MB, out


def test_the_cap_is_a_parameter_counted_in_utf8_bytes():
    code = "import torch.nn as nn\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(4, num_classes)\n"
    assert isinstance(check(code, max_bytes=len(code)), Checked)
    wide = code + "# " + "\u00e9" * 2000 + "\n"  # 2,000 more characters, 4,000 more bytes
    refused = check(wide, max_bytes=3000)
    assert len(wide) < 3000 and isinstance(refused, Rejection) and refused.stage == "static"
    assert refused.message.startswith("candidate is 4 KB; the limit is 3 KB"), refused.message
    assert bounded.too_big("x" * 10, 10) is None and bounded.too_big("x" * 11, 10) == (
        "candidate is 11 bytes; the limit is 10 bytes"
    )


def test_the_child_answers_plain_data_and_the_id_is_computed_here():
    code = "import torch.nn as nn\n\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(4, num_classes)  # c\n"
    raw = bounded.call("check", code=code, allowed=["torch.nn"])
    assert raw == {"kind": "checked", "code": raw["code"]}  # strings only: no id, no objects
    checked = check(code)
    assert isinstance(checked, Checked) and checked.code == raw["code"] and "# c" not in checked.code


def test_the_cap_is_a_setting_of_eval_and_search(tmp_path, capsys):
    from conftest import GOOD_CNN

    from llmnas.cli import main

    path = tmp_path / "padded.py"
    path.write_text(GOOD_CNN + "\n# " + "x" * 3000 + "\n")
    assert main(["eval", str(path), "--data", "digits", "--max-candidate-kb", "1"]) == 1
    assert "candidate is 3 KB; the limit is 1 KB" in capsys.readouterr().out
