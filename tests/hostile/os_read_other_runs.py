# expect: build
# message: run files seen: []
# static: skip
# Looks for other runs' prediction files and event logs (results/*/candidates/*/val_pred.npy,
# test_pred.npy, events.jsonl) in the checkout's results/, the homes, /tmp and other usual places.
# tests/test_minimal_view.py plants world-readable ones in the checkout's results/ and in /tmp: the
# minimal view (sandbox/view.py) holds neither, whatever their modes.
import math
import os
import sys
import time

import torch.nn as nn

NAMES = {"val_pred.npy", "test_pred.npy", "events.jsonl", "result.json"}
ROOTS = ("{{REPO}}/results", "{{REPO}}", "{{HOME}}", "/root", "/home", "/tmp", "/var/tmp", "/work", "/srv", "/mnt", "/data", "/opt")
SKIP = {"site-packages", "dist-packages", "__pycache__", ".git", "node_modules"}


def build_model(input_shape, num_classes):
    own = os.path.realpath(os.getcwd())
    python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    seen, end, entries = [], time.monotonic() + 2.0, 0
    for root in ROOTS:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP and os.path.realpath(os.path.join(folder, d)) not in python]
            entries += len(files) + len(dirs)
            if time.monotonic() > end or entries > 50_000:
                seen.append(f"gave up in {folder}")
                break
            if os.path.realpath(folder).startswith(own):
                continue
            seen += [os.path.join(folder, n) for n in files if n in NAMES]
    print(*sorted(set(seen)), sep="\n")
    raise RuntimeError(f"run files seen: {sorted(set(seen))[:10]}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
