# expect: static
# message: private attribute `typing.ForwardRef(
# payload: os_socket_loopback
# The ForwardRef escape connecting to a listener in the test process. Refused statically (private
# attribute); the payload runs at the OS layer as os_socket_loopback.
import math
import typing

import torch.nn as nn


def _builtin(name):
    box = []
    typing.ForwardRef(f"[box.append({name}), int][1]")._evaluate({"box": box}, None, frozenset())
    return box[0]


def build_model(input_shape, num_classes):
    _builtin("exec")("import socket\nsocket.socket().connect(('127.0.0.1', {{PORT}}))", {})
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
