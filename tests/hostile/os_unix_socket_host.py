# expect: build
# message: PermissionError: [Errno 1] Operation not permitted
# message-hook: sandbox: socket.__new__ is not allowed
# static: skip
# A pathname unix socket is a file, not a network address: the network namespace does not cover it.
# test_containment listens on one in a world-writable folder the candidate can see; the seccomp
# filter refuses socket(AF_UNIX) before any path is looked at.
import math
import socket

import torch.nn as nn


def build_model(input_shape, num_classes):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("{{SOCKET}}")
    s.sendall(b"llmnas-hostile unix socket")
    raise RuntimeError("connected to the host's unix socket")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
