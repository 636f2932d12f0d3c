"""The real openai client against a loopback fake server; HFChat on a tiny local model; the usage meter."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from fakes.openai_server import FakeOpenAI, drop, empty_choices, error, malformed, ok, slow
from fakes.tiny_hf import build_tiny_hf

import llmnas.llm.chat
from llmnas.cli import main
from llmnas.errors import UserError
from llmnas.llm.backends import parse_llm
from llmnas.llm.chat import BudgetExhausted, Completion, LLMError, OpenAIChat
from llmnas.llm.local import HFChat
from llmnas.llm.usage import Usage, UsageMeter, cost_rates, known_price

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "write a model"}]


@pytest.fixture(autouse=True)
def _no_real_endpoint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def chat(server: FakeOpenAI, **kw) -> OpenAIChat:
    options = {"timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01, **kw}
    return OpenAIChat("fake-model", base_url=server.url, **options)


def test_normal_completion_with_usage_and_request_body():
    with FakeOpenAI(ok("hello", prompt_tokens=12, completion_tokens=3)) as server:
        out = chat(server).complete(MESSAGES, temperature=0.3, max_tokens=99)
    assert out == [Completion("hello", 12, 3)]
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "fake-model" and req["body"]["messages"] == MESSAGES
    assert req["body"]["temperature"] == 0.3 and req["body"]["max_tokens"] == 99 and req["body"]["n"] == 1
    assert req["headers"]["authorization"] == "Bearer EMPTY"


def test_n_samples_share_the_usage():
    with FakeOpenAI(ok(["a", "b", "c"], prompt_tokens=10, completion_tokens=7)) as server:
        out = chat(server).complete(MESSAGES, temperature=1.0, n=3)
    assert [c.text for c in out] == ["a", "b", "c"]
    assert sum(c.completion_tokens for c in out) == 7 and {c.prompt_tokens for c in out} == {10}


def test_retries_429_and_500_then_succeeds_honouring_retry_after(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(llmnas.llm.chat, "time", SimpleNamespace(sleep=slept.append))
    with FakeOpenAI(error(429, "slow down", retry_after="30"), error(500), ok("done")) as server:
        out = chat(server).complete(MESSAGES, temperature=0.5)
    assert out[0].text == "done"
    assert len(server.requests) == 3
    assert slept[0] >= 30 and slept[1] < 30, slept  # the server's Retry-After, then our own backoff


def test_dropped_connection_and_malformed_body_are_retried():
    with FakeOpenAI(drop(), malformed(), ok("fine")) as server:
        assert chat(server).complete(MESSAGES, temperature=0.5)[0].text == "fine"
    assert len(server.requests) == 3


def test_timeouts_are_retried_then_raise_retryable():
    with (
        FakeOpenAI(default=slow(3.0)) as server,
        pytest.raises(LLMError, match="timed out.*gave up after 3 attempts") as info,
    ):
        chat(server, timeout_s=0.2, max_retries=2).complete(MESSAGES, temperature=0.5)
    assert info.value.retryable
    assert len(server.requests) == 3


def test_server_error_storm_gives_up_after_max_retries():
    with FakeOpenAI(default=error(503)) as server, pytest.raises(LLMError) as info:
        chat(server, max_retries=2).complete(MESSAGES, temperature=0.5)
    assert info.value.retryable and "HTTP 503" in str(info.value)
    assert len(server.requests) == 3


def test_401_fails_at_once_with_key_hint():
    with (
        FakeOpenAI(default=error(401, "invalid api key")) as server,
        pytest.raises(LLMError, match="OPENAI_API_KEY or pass --api-key") as info,
    ):
        chat(server).complete(MESSAGES, temperature=0.5)
    assert not info.value.retryable
    assert "\n" not in str(info.value)
    assert len(server.requests) == 1


def test_404_names_the_model_and_url():
    with (
        FakeOpenAI(default=error(404, "model not found")) as server,
        pytest.raises(LLMError, match="model name and URL in --llm"),
    ):
        chat(server).complete(MESSAGES, temperature=0.5)
    assert len(server.requests) == 1


def test_max_completion_tokens_is_used_when_max_tokens_is_refused():
    refusal = error(400, "Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' instead.")
    with FakeOpenAI(refusal, ok("ok")) as server:
        out = chat(server).complete(MESSAGES, temperature=0.5, max_tokens=77)
    assert out[0].text == "ok"
    assert server.requests[1]["body"]["max_completion_tokens"] == 77
    assert "max_tokens" not in server.requests[1]["body"]


def test_temperature_is_dropped_when_the_model_only_supports_the_default():
    refusal = error(400, "Unsupported value: 'temperature' does not support 0.5 with this model.")
    with FakeOpenAI(refusal, ok("ok"), ok("again")) as server:
        model = chat(server)
        model.complete(MESSAGES, temperature=0.5)
        model.complete(MESSAGES, temperature=0.5)
    assert [("temperature" in r["body"]) for r in server.requests] == [True, False, False]


def test_empty_choices_and_empty_content_give_empty_text():
    with FakeOpenAI(empty_choices(), ok("")) as server:
        model = chat(server)
        assert [c.text for c in model.complete(MESSAGES, temperature=0.5)] == [""]
        assert [c.text for c in model.complete(MESSAGES, temperature=0.5)] == [""]


def test_concurrency_limit_is_shared_by_threads():
    with FakeOpenAI(default=ok("x", delay_s=0.15)) as server:
        model = chat(server, concurrency=2)
        threads = [
            threading.Thread(target=model.complete, args=(MESSAGES,), kwargs={"temperature": 0.5})
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(server.requests) == 6
    assert server.max_active == 2


def test_parse_llm_forms(monkeypatch):
    assert parse_llm("offline") is None
    local = parse_llm("http://localhost:11434/v1#qwen2.5-coder:7b")
    assert isinstance(local, OpenAIChat)
    assert (local.base_url, local.model) == ("http://localhost:11434/v1", "qwen2.5-coder:7b")
    assert local.name == "http://localhost:11434/v1#qwen2.5-coder:7b"
    with pytest.raises(LLMError, match="set OPENAI_API_KEY or pass --api-key"):
        parse_llm("openai:gpt-4o-mini")
    remote = parse_llm("openai:gpt-4o-mini", api_key="sk-test")
    assert remote.name == "openai:gpt-4o-mini" and remote.base_url is None
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert parse_llm("openai:some-model").base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    "bad", ["", "gpt-4o", "openai:", "hf:", "http://localhost:8000/v1", "http://x/v1#", "ftp://x#m"]
)
def test_parse_llm_rejects_unknown_forms(bad):
    with pytest.raises(ValueError, match="--llm"):
        parse_llm(bad)


def test_parse_llm_hf_form_reaches_the_loader(tmp_path):
    with pytest.raises(LLMError, match="--llm hf:.*cannot load"):
        parse_llm(f"hf:{tmp_path}")


class Scripted:
    """A ChatModel that returns fixed completions, or raises, in order."""

    name = "openai:gpt-4o-mini"

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)

    def complete(self, messages, *, temperature, n=1, max_tokens=2048):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_usage_meter_totals_cost_and_records():
    records = []
    inner = Scripted(
        [Completion("a", 1000, 500)],
        LLMError("boom", retryable=True),
        [Completion("b", 2000, 300), Completion("c", 2000, 200)],
    )
    meter = UsageMeter(inner, on_call=records.append)
    assert meter.price_per_m == known_price("openai:gpt-4o-mini") == (0.15, 0.60)
    meter.complete(MESSAGES, temperature=0.5)
    with pytest.raises(LLMError, match="boom"):
        meter.complete(MESSAGES, temperature=0.5)
    meter.complete(MESSAGES, temperature=0.5, n=2)
    assert meter.usage == Usage(
        calls=3,
        prompt_tokens=3000,
        completion_tokens=1000,
        failures=1,
        cost_usd=pytest.approx((3000 * 0.15 + 1000 * 0.60) / 1e6),
    )
    assert [r["ok"] for r in records] == [True, False, True]
    assert records[1]["error"] == "boom" and records[2]["completion_tokens"] == 500
    assert meter.totals()["calls"] == 3


def test_usage_meter_refuses_calls_once_the_budget_is_spent():
    meter = UsageMeter(Scripted([Completion("a", 80, 30)], [Completion("b", 1, 1)]), max_tokens=100)
    meter.complete(MESSAGES, temperature=0.5)
    with pytest.raises(BudgetExhausted, match="token budget") as info:
        meter.complete(MESSAGES, temperature=0.5)
    assert not info.value.retryable and isinstance(info.value, LLMError)
    costly = UsageMeter(Scripted([Completion("a", 10, 10)]), max_cost_usd=1e-6, price_per_m=(1.0, 1.0))
    costly.complete(MESSAGES, temperature=0.5)
    with pytest.raises(BudgetExhausted, match="cost budget"):
        costly.complete(MESSAGES, temperature=0.5)


def test_prices_are_known_for_local_models_and_listed_openai_models_only():
    assert known_price("hf:/models/x") == (0.0, 0.0)
    assert known_price("openai:gpt-4o-2024-08-06") == (2.50, 10.00)
    for unknown in ("http://localhost:8000/v1#gpt-4o", "openai:o1", "openai:gpt-4-turbo", "openai:gpt-5-pro"):
        assert known_price(unknown) is None, unknown  # a prefix (gpt-5 of gpt-5-pro) is not a match


@pytest.mark.parametrize("llm", ["openai:o1", "openai:gpt-3.5-turbo", "https://api.example.com/v1#big-model"])
def test_a_cost_budget_on_a_model_of_unknown_price_is_refused_unless_priced(llm, capsys, tmp_path):
    argv = ["search", "classify digits", "--llm", llm, "--max-cost", "2", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--max-cost" in err and "--price-in and --price-out" in err and llm in err
    assert not (tmp_path / "r").exists()
    assert cost_rates(llm, 3.0, 12.0, 2.0) == (3.0, 12.0)  # given prices: counted, and the budget holds
    assert cost_rates(llm, None, None, None) == (0.0, 0.0)  # no budget: nothing to refuse
    assert main([*argv[:-2], "--price-in", "3", "--out", str(tmp_path / "r")]) == 2
    assert "--price-in, --price-out" in capsys.readouterr().err  # one price without the other


def test_given_prices_are_what_a_run_counts(tmp_path):
    meter = UsageMeter(Scripted([Completion("a", 1_000_000, 500_000)]), price_per_m=cost_rates("x", 3, 12, 1))
    meter.complete(MESSAGES, temperature=0.5)
    assert meter.usage.cost_usd == pytest.approx(3 + 6)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_hf(tmp_path_factory.mktemp("tiny_hf")))


def test_hf_chat_applies_template_and_returns_only_new_text(tiny_model):
    model = HFChat(tiny_model, device="cpu", max_new_tokens=12)
    prompt = model.render(MESSAGES)
    assert prompt.startswith("<|bos|><|system|>\nbe brief") and prompt.endswith("<|assistant|>\n")
    out = model.complete(MESSAGES, temperature=0.9, n=3, max_tokens=64)
    assert len(out) == 3
    prompt_ids = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for c in out:
        assert c.prompt_tokens == len(prompt_ids)
        assert 1 <= c.completion_tokens <= 12
        assert "be brief" not in c.text and "<|user|>" not in c.text
    greedy = model.complete(MESSAGES, temperature=0.0, n=2)
    assert greedy[0] == greedy[1]


def test_hf_chat_without_template_uses_plain_transcript(tmp_path):
    model = HFChat(
        str(build_tiny_hf(tmp_path / "plain", chat_template=False)), device="cpu", max_new_tokens=4
    )
    assert model.render(MESSAGES) == "System: be brief\n\nUser: write a model\n\nAssistant:"
    assert len(model.complete(MESSAGES, temperature=0.7)) == 1


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hf_chat_loads_a_lora_adapter(tiny_model, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model = HFChat(tiny_model, device="cpu", max_new_tokens=4)
    for round_ in range(2):
        base = HFChat(tiny_model, device="cpu").model
        lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        lora.save_pretrained(tmp_path / f"adapter{round_}")
        model.load_adapter(str(tmp_path / f"adapter{round_}"))
    assert isinstance(model.model, PeftModel)
    assert list(model.model.peft_config) == ["round2"]
    assert len(model.complete(MESSAGES, temperature=0.7)) == 1


def test_a_local_model_runs_where_device_says(tiny_model):
    """--device reaches an hf: model: cpu is cpu, auto is cuda only when there is one, and cuda
    without one is an error rather than a quiet run on the CPU."""
    import torch

    assert parse_llm(f"hf:{tiny_model}", device="cpu").device == "cpu"
    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert parse_llm(f"hf:{tiny_model}", device="auto").device == here
    if here == "cpu":
        with pytest.raises(UserError, match="--device cuda: no CUDA device is visible here"):
            parse_llm(f"hf:{tiny_model}", device="cuda")
