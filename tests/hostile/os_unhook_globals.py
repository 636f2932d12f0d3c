# expect: build
# message: OSError: [Errno 101] Network is unreachable
# message-hook: sandbox: socket.__new__ is not allowed
# static: skip
# The trick the first corpus used to turn the audit hook off: rebind the tables it reads as module
# globals of sandbox.limits. The hook now holds its own references, so it still refuses the socket;
# without the hook, the network namespace does.
import math
import socket
import sys

import torch.nn as nn


def build_model(input_shape, num_classes):
    limits = sys.modules["sandbox.limits"]
    limits._REFUSED_EVENTS = ()
    limits._PATH_EVENTS = frozenset()
    limits._SECRET_READS = ()
    limits._WRITE_FLAGS = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2)
    sock.connect(("127.0.0.1", int("{{PORT}}")))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
