# expect: static
# message: private attribute `typing.ForwardRef(
# payload: os_exit_via_torch
# typing.ForwardRef evaluates a string, which hands out any builtin (here `exec`) without a forbidden
# name or dunder in the code; then os._exit. Refused statically (private attribute); the payload runs
# at the OS layer as os_exit_via_torch.
import math
import typing

import torch.nn as nn


def _builtin(name):
    box = []
    typing.ForwardRef(f"[box.append({name}), int][1]")._evaluate({"box": box}, None, frozenset())
    return box[0]


def build_model(input_shape, num_classes):
    _builtin("exec")("import os\nos._exit(3)", {})
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
