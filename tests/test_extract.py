"""Extraction from realistic replies: each fixture's expected outcome lives in replies/expected.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmnas.candidate.checks import DEFAULT_ALLOWED_IMPORTS, Checked, Rejection, check
from llmnas.candidate.extract import Extracted, extract_code
from llmnas.candidate.repair import add_missing_imports, missing_imports

REPLIES = Path(__file__).parent / "fixtures" / "replies"
EXPECTED: dict[str, dict] = json.loads((REPLIES / "expected.json").read_text())


def read_reply(name: str) -> str:
    return (REPLIES / name).read_bytes().decode("utf-8")  # bytes: keep Windows line endings as written


def test_manifest_covers_every_fixture() -> None:
    files = {p.name for p in REPLIES.glob("*.md")}
    assert files == set(EXPECTED)
    assert len(files) >= 30
    assert sum(not e["ok"] for e in EXPECTED.values()) >= 8
    assert b"\r\n" in (REPLIES / "21_windows_line_endings.md").read_bytes()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reply_fixture(name: str) -> None:
    expected = EXPECTED[name]
    result = extract_code(read_reply(name))
    if not expected["ok"]:
        assert isinstance(result, Rejection), result
        assert result.stage == "extract"
        for fragment in expected.get("message_contains", []):
            assert fragment in result.message
        return
    assert isinstance(result, Extracted), result
    for fragment in expected.get("contains", []):
        assert fragment in result.code
    for fragment in expected.get("not_contains", []):
        assert fragment not in result.code
    for fragment in expected.get("notes_contain", []):
        assert any(fragment in note for note in result.notes), result.notes
    checked = check(result.code)
    assert isinstance(checked, Checked), checked


@pytest.mark.sandbox
def test_extract_and_validate_do_not_import_torch() -> None:
    script = "import sys, llmnas.candidate.extract; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True)


def test_extraction_is_deterministic() -> None:
    reply = read_reply("27_full_training_script.md")
    assert extract_code(reply) == extract_code(reply)


def test_clean_reply_is_returned_unchanged_without_notes() -> None:
    code = "import torch.nn as nn\n\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(4, num_classes)\n"
    result = extract_code(f"```python\n{code}```")
    assert result == Extracted(code, ())


EINOPS_REPLY = """```python
import einops
import numpy as np
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(einops.rearrange(x, "b c h w -> b (c h w)"))
```"""


def test_used_imports_outside_the_allow_list_are_kept_for_the_static_check() -> None:
    result = extract_code(EINOPS_REPLY)
    assert isinstance(result, Extracted)
    assert "import einops" in result.code and "numpy" not in result.code
    assert any("numpy" in note for note in result.notes)
    rejection = check(result.code)
    assert isinstance(rejection, Rejection) and "`import einops`" in rejection.message
    extended = DEFAULT_ALLOWED_IMPORTS | {"einops"}
    assert isinstance(check(extract_code(EINOPS_REPLY, extended).code, extended), Checked)


def test_missing_imports_are_only_added_when_allowed() -> None:
    reply = "```python\ndef build_model(input_shape, num_classes):\n    return nn.Linear(math.prod(input_shape), num_classes)\n```"
    result = extract_code(reply, frozenset({"torch", "torch.nn"}))
    assert isinstance(result, Extracted)
    assert "import torch.nn as nn" in result.code and "import math" not in result.code


def test_add_missing_imports_places_imports_after_docstring_and_future() -> None:
    code = '"""Doc."""\nfrom __future__ import annotations\nclass Model(nn.Module):\n    def forward(self, x):\n        return F.relu(torch.tanh(x)) * math.pi\n'
    fixed = add_missing_imports(code)
    assert fixed.startswith(
        '"""Doc."""\nfrom __future__ import annotations\nimport torch\nimport torch.nn as nn\n'
        "import torch.nn.functional as F\nimport math\n\nclass Model"
    )
    assert missing_imports(fixed) == []
    assert isinstance(check(fixed), Checked)


def test_add_missing_imports_respects_allow_list_and_existing_bindings() -> None:
    code = "from torch import nn\n\ndef build_model(a, b):\n    return nn.Linear(math.floor(2.5), b)\n"
    assert missing_imports(code) == ["import math"]
    assert missing_imports(code, frozenset({"torch"})) == []
    assert add_missing_imports("x = 1\n") == "x = 1\n"


@pytest.mark.parametrize(
    "reply",
    ["I’m sorry, but I can’t help with that.", "As an AI developed to be helpful, I cannot write that code."],
)
def test_refusals_are_named(reply: str) -> None:
    result = extract_code(reply)
    assert isinstance(result, Rejection) and "refusal" in result.message


def test_several_root_classes_pick_the_last_one() -> None:
    reply = """```python
import torch.nn as nn

class SmallMLP(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))

class SmallCNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(1, num_classes, 8)

    def forward(self, x):
        return self.conv(x).flatten(1)
```"""
    result = extract_code(reply)
    assert isinstance(result, Extracted)
    assert "return SmallCNN(num_classes=num_classes)" in result.code
    assert "class SmallMLP" not in result.code  # unused by the chosen model
