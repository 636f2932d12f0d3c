# expect: build
# message: data files seen: []
# static: skip
# Looks for the user's own data files (the CSV or .npz passed to --data, other datasets) where people
# keep them: the home folders, the source checkout, /tmp, /work, /data, /mnt. The worker only ever needs
# the pool's data folder (training data with labels, validation and test inputs); the minimal view
# (sandbox/view.py) holds nothing else. tests/test_minimal_view.py plants a CSV in the checkout and
# one in the driver's home.
import math
import os
import re
import sys
import time

import torch.nn as nn

DATA = re.compile(r"\.(csv|tsv|npz|npy|parquet|arff|feather|h5|pkl)(\.gz|\.bz2|\.xz|\.zip)?$")
ROOTS = ("{{HOME}}", "{{REPO}}", "/root", "/home", "/tmp", "/var/tmp", "/work", "/srv", "/data", "/mnt", "/media", "/opt")
SKIP = {"site-packages", "dist-packages", "__pycache__", ".git", "node_modules"}


def build_model(input_shape, num_classes):
    own = os.path.realpath(os.getcwd())
    allowed = (own, os.path.realpath("{{DATA_DIR}}"))
    python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    seen, end, entries = [], time.monotonic() + 2.0, 0
    for root in ROOTS:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP and os.path.realpath(os.path.join(folder, d)) not in python]
            entries += len(files) + len(dirs)
            if time.monotonic() > end or entries > 50_000:
                seen.append(f"gave up in {folder}")
                break
            if os.path.realpath(folder).startswith(allowed):
                continue
            seen += [os.path.join(folder, n) for n in files if DATA.search(n)]
    print(*sorted(set(seen)), sep="\n")
    raise RuntimeError(f"data files seen: {sorted(set(seen))[:10]}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
