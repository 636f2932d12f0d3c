# expect: build
# message: seen: []
# static: skip
# What a candidate could read that the sandbox never needs: the driver's home and /root (keys, shell
# history, caches of datasets), /home, the source checkout beyond the `sandbox` package (tests/ with
# the hostile corpus and its fixtures, llmnas/, .git, results/), /etc (passwd, hosts). The minimal view
# (sandbox/view.py) holds none of it: a home folder shows at most the folders on the way to the Python
# installation, the checkout only `sandbox/` (and a virtual environment inside it).
import math
import os
import sys

import torch.nn as nn

PLACES = (
    "{{REPO}}/tests",
    "{{REPO}}/llmnas",
    "{{REPO}}/results",
    "{{REPO}}/README.md",
    "{{REPO}}/pyproject.toml",
    "{{REPO}}/.git",
    "/root/.bashrc",
    "/root/.ssh",
    "/root/.cache",
    "{{HOME}}/.cache",
    "/home",
    "/etc/passwd",
    "/etc/hosts",
    "/etc/hostname",
    "/usr/share",
    "/usr/bin",
    "/var/log",
)


def build_model(input_shape, num_classes):
    python = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)]
    seen = [p for p in PLACES if os.path.lexists(p)]
    for home in ("{{HOME}}", "/root"):
        try:
            names = os.listdir(home)
        except OSError:
            continue
        for name in names:  # a home may hold the folders on the way to the Python installation
            path = os.path.realpath(os.path.join(home, name))
            if not any(p == path or p.startswith(path + os.sep) for p in python):
                seen.append(os.path.join(home, name))
    print(*sorted(set(seen)), sep="\n")
    raise RuntimeError(f"seen: {sorted(set(seen))[:10]}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
