"""Static checks: hostile code is refused with a message naming the construct; valid code gets a stable id."""

from __future__ import annotations

import re

import pytest

from llmnas.candidate.checks import (
    DEFAULT_ALLOWED_IMPORTS,
    Checked,
    Rejection,
    candidate_id,
    check,
    normalise,
)

HEADER = "import torch\nimport torch.nn as nn\n\n\n"


def entry(body: str) -> str:
    """A valid module whose build_model runs `body` first (the body starts on line 6)."""
    return (
        HEADER
        + f"def build_model(input_shape, num_classes):\n    {body}\n    return nn.Linear(4, num_classes)\n"
    )


HOSTILE = [
    ("import os\n" + entry("os.system('ls')"), 1, "`import os`"),
    ("import os.path\n" + entry("pass"), 1, "`import os.path`"),
    ("from os import system\n" + entry("system('ls')"), 1, "`from os import ...`"),
    ("import sys\n" + entry("pass"), 1, "`import sys`"),
    ("import subprocess\n" + entry("subprocess.run(['ls'])"), 1, "`import subprocess`"),
    ("import socket\n" + entry("socket.socket()"), 1, "`import socket`"),
    ("import ctypes\n" + entry("ctypes.CDLL(None)"), 1, "`import ctypes`"),
    ("import importlib\n" + entry("importlib.import_module('os')"), 1, "`import importlib`"),
    ("import pickle\n" + entry("pickle.loads(b'')"), 1, "`import pickle`"),
    ("import torch.utils.data\n" + entry("pass"), 1, "`import torch.utils.data`"),
    ("from torch.utils import cpp_extension\n" + entry("pass"), 1, "`from torch.utils import ...`"),
    ("from .layers import Block\n" + entry("pass"), 1, "relative import"),
    ("from torch import load\n" + entry("load('w.pt')"), 1, "`from torch import load`"),
    ("from torch import *\n" + entry("pass"), 1, "import *"),
    (entry("__import__('os').system('ls')"), 6, "`__import__`"),
    (entry("getattr(input_shape, '__globals__')"), 6, "__globals__"),
    (entry("f = getattr"), 6, "`getattr`"),
    (entry("setattr(nn, num_classes, 1)"), 6, "plain string literal"),
    (entry("().__class__.__bases__[0].__subclasses__()"), 6, "__subclasses__"),
    (entry("build_model.__globals__['os']"), 6, "__globals__"),
    (entry("x = nn.Module.__dict__"), 6, "__dict__"),
    (entry("open('/etc/passwd').read()"), 6, "`open`"),
    (entry("eval('1 + 1')"), 6, "`eval`"),
    (entry("exec('x = 1')"), 6, "`exec`"),
    (entry("compile('1', 'f', 'eval')"), 6, "`compile`"),
    (entry("breakpoint()"), 6, "`breakpoint`"),
    (entry("input()"), 6, "`input`"),
    (entry("globals()['x'] = 1"), 6, "`globals`"),
    (entry("vars(nn)"), 6, "`vars`"),
    (entry("os.system('ls')"), 6, "`os`"),
    (entry("torch.load('weights.pt')"), 6, "torch.load"),
    (entry("torch.save(num_classes, 'x.pt')"), 6, "torch.save"),
    (entry("torch.hub.load('pytorch/vision', 'resnet18')"), 6, "torch.hub"),
    (entry("torch.ops.load_library('evil.so')"), 6, "torch.ops"),
    (entry("torch.utils.cpp_extension.load_inline('m', '')"), 6, "torch.utils"),
    (entry("torch.jit.load('m.pt')"), 6, "torch.jit.load"),
    (entry("torch._C._set_print_stack_traces_on_fatal_signal(True)"), 6, "torch._C"),
    (entry("torch.classes.load_library('x')"), 6, "torch.classes"),
    (entry("torch.from_file('/etc/passwd')"), 6, "from_file"),
    (entry("torch.compile(nn.Linear(2, 2))"), 6, "compile"),
    (entry("torch.sys.modules"), 6, "torch.sys"),
    ("import torch as t\n" + entry("t.ops.aten"), 7, "torch.ops"),
    (entry("(lambda: __builtins__)()"), 6, "`__builtins__`"),
    (entry("'{0.__globals__}'.format(build_model)"), 6, "`__globals__`"),
    (entry("x = '__glo' 'bals__'"), 6, "`__globals__`"),
    (entry("x = b'\\x5f\\x5fglobals\\x5f\\x5f'"), 6, "`__globals__`"),
    (entry("x = __loader__"), 6, "`__loader__`"),
    (entry("pass") + "print('loaded')\n", 8, "would run at import time"),
    (entry("pass") + "for i in range(3):\n    pass\n", 8, "would run at import time"),
    (entry("pass") + "model = build_model((1, 8, 8), 10)\n", 8, "would run at import time"),
    ("from typing import get_type_hints\n" + entry("pass"), 1, "get_type_hints"),
]


@pytest.mark.parametrize(
    ("code", "line", "fragment"), HOSTILE, ids=[h[2] + f"@{i}" for i, h in enumerate(HOSTILE)]
)
def test_hostile_code_is_rejected_with_line_and_construct(code: str, line: int, fragment: str) -> None:
    result = check(code)
    assert isinstance(result, Rejection), code
    assert result.stage == "static"
    assert fragment in result.message
    assert f"line {line}:" in result.message


VALID = {
    "sequential": """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(32), nn.ReLU(), nn.Linear(32, num_classes))
""",
    "model_class": """
import torch
from torch import nn
from torch.nn import functional as F
from typing import Optional

HIDDEN = (16, 32)


class Model(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, dropout: Optional[float] = None):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], HIDDEN[0], 3, padding=1)
        self.fc = nn.Linear(HIDDEN[0], num_classes)

    def forward(self, input):
        return self.fc(F.relu(self.conv(input)).mean(dim=(2, 3)))
""",
    "build_model_with_blocks": """
import math
import torch
import torch.nn as nn
import torch.nn.functional as F
from collections import OrderedDict
from functools import partial


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=1)
        self.act = getattr(nn, "GELU")()

    def forward(self, signal):
        return self.act(self.conv(signal)) + signal


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    width = 2 ** int(math.log2(16))
    layers = OrderedDict(stem=nn.Conv1d(input_shape[0], width, 3, padding=1))
    layers["blocks"] = nn.Sequential(*[Block(width) for _ in range(2)])
    layers["pool"] = nn.AdaptiveAvgPool1d(1)
    layers["flat"] = nn.Flatten()
    layers["head"] = partial(nn.Linear, width)(num_classes)
    return nn.Sequential(layers)


if __name__ == "__main__":
    import os
    print(build_model((1, 40), 10), os.getcwd())
""",
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_candidates_are_accepted(name: str) -> None:
    result = check(VALID[name])
    assert isinstance(result, Checked), result
    assert re.fullmatch(r"[0-9a-f]{12}", result.candidate_id)
    assert result.candidate_id == candidate_id(result.code)
    assert isinstance(check(result.code), Checked)  # normalised code still passes


def test_main_block_is_stripped_by_normalisation() -> None:
    result = check(VALID["build_model_with_blocks"])
    assert isinstance(result, Checked)
    assert "__main__" not in result.code and "os" not in result.code.split()


def test_nested_main_guard_is_still_checked() -> None:
    code = entry("if __name__ == '__main__':\n        import os")
    result = check(code)
    assert isinstance(result, Rejection) and "`import os`" in result.message


BASE = '''import torch.nn as nn


def build_model(input_shape, num_classes):
    """Two layers."""
    hidden = 32  # width
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
'''

COSMETIC_VARIANTS = [
    BASE.replace("    hidden = 32  # width\n", "    # a comment\n    hidden = 32\n"),
    BASE.replace('    """Two layers."""\n', ""),
    BASE.replace('    """Two layers."""\n', '    """A different\n    docstring."""\n'),
    '"""Module docstring."""\n' + BASE,
    "\n\n" + BASE.replace("\n\n\n", "\n") + "\n\n\n",
    BASE.replace("nn.Flatten(), nn.LazyLinear(hidden)", "nn.Flatten(),nn.LazyLinear( hidden )"),
    BASE.replace("    return nn.Sequential(", "    return nn.Sequential(  \n        ").replace(
        ", nn.ReLU()", ",\n nn.ReLU()"
    ),
    BASE + '\n\nif __name__ == "__main__":\n    print(build_model((1, 8, 8), 10))\n',
    BASE.replace("    ", "\t"),
]


@pytest.mark.parametrize("variant", COSMETIC_VARIANTS)
def test_cosmetic_differences_share_an_id(variant: str) -> None:
    base, other = check(BASE), check(variant)
    assert isinstance(base, Checked) and isinstance(other, Checked), other
    assert other.candidate_id == base.candidate_id
    assert other.code == base.code


@pytest.mark.parametrize(
    "variant",
    [
        BASE.replace("hidden = 32", "hidden = 33"),
        BASE.replace("nn.ReLU()", "nn.GELU()"),
        BASE.replace("'", '"') + "X = 1\n",
    ],
)
def test_real_differences_change_the_id(variant: str) -> None:
    base, other = check(BASE), check(variant)
    assert isinstance(base, Checked) and isinstance(other, Checked)
    assert other.candidate_id != base.candidate_id


def test_user_extended_allow_list() -> None:
    code = "import einops\n" + entry("einops.rearrange")
    assert isinstance(check(code), Rejection)
    assert isinstance(check(code, DEFAULT_ALLOWED_IMPORTS | {"einops"}), Checked)


def test_submodule_of_allowed_module_is_not_allowed() -> None:
    result = check("import math.foo\nimport collections.abc\n" + entry("pass"))
    assert isinstance(result, Rejection)
    assert "`import math.foo`" in result.message and "`import collections.abc`" in result.message


@pytest.mark.parametrize(
    "code",
    [
        "import torch.nn as nn\n\nclass Net(nn.Module):\n    pass\n",
        "import torch\n\ndef make_model(n):\n    return n\n",
        "",
    ],
)
def test_contract_message_says_what_is_expected(code: str) -> None:
    result = check(code)
    assert isinstance(result, Rejection)
    assert "build_model(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module" in result.message
    assert "`Model" in result.message


def test_build_model_must_take_input_shape_and_num_classes() -> None:
    result = check("def build_model(num_classes):\n    return None\n")
    assert (
        isinstance(result, Rejection)
        and "line 1:" in result.message
        and "build_model(input_shape, num_classes)" in result.message
    )
    assert isinstance(check("def build_model(*args):\n    return None\n"), Checked)
    assert "async" in check("async def build_model(a, b):\n    return None\n").message
    assert isinstance(check("def build_model(shape, n, width=8):\n    return None\n"), Checked)


def test_syntax_error_names_line_and_column() -> None:
    result = check("import torch\n\ndef build_model(a, b)\n    return a\n")
    assert isinstance(result, Rejection)
    assert result.message.startswith("syntax error at line 3, column")


def test_tab_space_mix_that_libcst_cannot_read_is_named() -> None:
    code = "import torch.nn as nn\n\ndef build_model(a, b):\n    if b:\n\t    return nn.Linear(4, b)\n    return None\n"
    result = check(code)
    assert isinstance(result, Rejection)
    assert result.message == "line 5: inconsistent use of tabs and spaces; indent with spaces only"


def test_one_report_per_forbidden_chain() -> None:
    result = check(entry("x = ().__class__.__bases__[0].__subclasses__()[0].__init__.__globals__"))
    assert isinstance(result, Rejection) and result.message.count("line 6:") == 1


def test_locally_bound_names_that_shadow_builtins_are_fine() -> None:
    code = entry("input = input_shape\n    open = 1\n    signal = [input, open]")
    assert isinstance(check(code), Checked)


def test_message_lists_at_most_three_problems() -> None:
    code = "import os\nimport sys\nimport socket\nimport ctypes\n" + entry("pass")
    result = check(code)
    assert isinstance(result, Rejection) and result.message.endswith("(and 1 more)")


def test_normalise_rejects_unparseable_code() -> None:
    with pytest.raises(ValueError):
        normalise("def f(:\n")


def test_docstrings_may_mention_dunders_because_they_are_stripped() -> None:
    code = '"""Calls __globals__ nowhere."""\n' + entry("pass").replace(
        "    pass\n", '    """See __subclasses__."""\n'
    )
    result = check(code)
    assert isinstance(result, Checked) and "__" not in result.code.replace("__init__", "")


def test_a_name_is_checked_as_everything_an_import_binds_to_it() -> None:
    """Name resolution is scope-blind on purpose: `t` may be torch anywhere once any import binds it so."""
    code = entry("import torch as t").replace("import torch\n", "import torch\nimport math as t\n", 1)
    result = check(code + "\n\ndef helper():\n    return t.ops.aten\n")
    assert isinstance(result, Rejection) and "torch.ops" in result.message
