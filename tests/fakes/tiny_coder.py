"""A tiny randomly initialised "coder" LM: a byte-level BPE tokenizer trained locally on candidate code
and on the prompt text, so both the generate prompt and the rendered programs take few tokens.

Used by the fine-tuning demonstration (tests/test_finetune.py, bench/finetune_demo.py). No network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakes.tiny_hf import CHAT_TEMPLATE, SPECIAL
from llmnas.candidate import checks as validate
from llmnas.llm import prompts
from llmnas.propose import space
from llmnas.task.spec import TaskSpec

DIGITS_SPEC = TaskSpec(
    text="classify 8x8 grayscale digits into 10 classes; under 20k parameters",
    num_classes=10,
    input_shape=(1, 8, 8),
    modality="image",
    max_params=20_000,
)


def programs(modality: str, count: int, seed: int) -> list[str]:
    """``count`` distinct programs from the offline search space, normalised as the loop stores them
    (``validate.check(code).code``)."""
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        out[validate.normalise(space.render(modality, space.sample_uniform(modality, rng)))] = None
    return list(out)


def prompt_texts(spec: TaskSpec = DIGITS_SPEC) -> list[str]:
    """The system prompt and the generate prompt, as the LLM proposer sends them."""
    contract = prompts.render("contract", allowed_imports=", ".join(sorted(validate.DEFAULT_ALLOWED_IMPORTS)))
    return [
        prompts.render("system"),
        prompts.render("generate", spec=prompts.format_spec(spec), contract=contract),
    ]


def tokenizer_corpus(seed: int = 1234) -> list[str]:
    """Code from every modality (rendered and normalised) plus the prompt text: what the vocabulary must express."""
    text = []
    for modality in ("image", "sequence", "tabular"):
        rng = np.random.default_rng(seed)
        for _ in range(80):
            code = space.render(modality, space.sample_uniform(modality, rng))
            text += [code, f"```python\n{validate.normalise(code).strip()}\n```"]
    return text + prompt_texts() * 20


def build_tiny_coder(
    folder: Path,
    *,
    vocab_size: int = 2048,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    init_std: float = 0.1,
    head_std: float = 0.3,
) -> Path:
    """Save a tiny randomly initialised Llama and its code tokenizer (with a chat template) under ``folder``."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    # Space-separated pieces (" nn.Conv2d(input_shape[0],", " padding=1),") are the largest units, then
    # byte-level BPE inside them: code and prompt text both come out in few tokens.
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?[^ \n]+|\s+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=init_std,
    )
    model = LlamaForCausalLM(config)
    # The final norm fixes the hidden state's size, so with the lm_head frozen a logit can reach only about
    # head_std * hidden_size. HF's default std (0.02) caps logits near 2 and no adapter could make the model
    # confident; a pretrained head has no such cap. 0.3 * 64 ~ 19 leaves room for a peaked distribution.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, head_std)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def proxy_reward(code: str) -> float:
    """A fast stand-in for a trained score (no sandbox): deeper, normalised nets score higher, in [0.4, 1]."""
    return round(0.4 + 0.1 * min(code.count("nn.Conv"), 4) + 0.2 * ("BatchNorm" in code), 3)


def write_offline_run(
    folder: Path, codes: list[str], rewards: list[float], spec: TaskSpec = DIGITS_SPEC
) -> Path:
    """A run folder as an offline search leaves it (run.json, candidates/<id>/model.py with no prompt,
    proposal and evaluation events), one round per ``workers``=4 proposals; every candidate passed."""
    from llmnas.runs.events import EvaluationEvent, ProposalEvent
    from llmnas.runs.store import RunStore

    store = RunStore.create(
        Path(folder), {"config": {"llm": "offline"}, "spec": spec.model_dump(mode="json")}, spec.text
    )
    for i, (code, reward) in enumerate(zip(codes, rewards, strict=True)):
        code = validate.normalise(code)  # what the loop stores (validate.check(code).code), cheaper
        cid = validate.candidate_id(code)
        store.write_candidate(cid, code)
        round_, slot = divmod(i, 4)
        store.append(ProposalEvent(round=round_, slot=slot, candidate_id=cid, operator="generate"))
        store.append(
            EvaluationEvent(
                round=round_, candidate_id=cid, ok=True, reward=reward, metrics={"val_acc": reward}
            )
        )
    store.close()
    return Path(folder)
