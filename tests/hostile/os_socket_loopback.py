# expect: build
# message: OSError: [Errno 101] Network is unreachable
# message-hook: sandbox: socket.__new__ is not allowed
# static: skip
# The payload of escape_forwardref_socket. The test listens on 127.0.0.1:PORT and checks that nothing
# ever connects: the zygote lives in its own network namespace, whose loopback is down.
import math
import socket

import torch.nn as nn


def build_model(input_shape, num_classes):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2)
    sock.connect(("127.0.0.1", int("{{PORT}}")))
    sock.sendall(b"pwned")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
