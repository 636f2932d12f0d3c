"""A tiny randomly initialised Llama with a locally trained byte-level BPE tokenizer and a chat template."""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<|bos|>", "<|eos|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]


def corpus(lines: int = 300) -> list[str]:
    """A few hundred lines of PyTorch-flavoured Python to train the tokenizer on."""
    layers = ["nn.Conv2d", "nn.Linear", "nn.BatchNorm2d", "nn.ReLU", "nn.GELU", "nn.Dropout", "nn.Conv1d"]
    out = []
    for i in range(lines):
        layer = layers[i % len(layers)]
        out += [
            f"import torch\nimport torch.nn as nn\nclass Block{i}(nn.Module):",
            f"    def __init__(self, c={8 + i % 64}):\n        super().__init__()\n        self.op = {layer}(c, c)",
            f"    def forward(self, x):\n        return torch.relu(self.op(x)) + x  # residual {i}",
            f"def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:\n    return Block{i}()",
        ]
    return out


def build_tiny_hf(folder: Path, *, chat_template: bool = True) -> Path:
    """Save a tiny causal LM and its tokenizer under ``folder``; no network is touched."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
