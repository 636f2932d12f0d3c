"""Which containment layers are in force on this host (`llmnas doctor`, and the run's `sandbox` event).

The probe is sandbox/layers.py, run in its own process: the driver imports nothing of the sandbox but
its protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

from llmnas.errors import RunFailed


@cache
def containment() -> dict[str, str]:
    """{layer: "on: ..." | "fallback: ..." | "off: ..."} for this host."""
    root = str(Path(__file__).resolve().parents[2])
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox.layers", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=root,
        )
        return {str(k): str(v) for k, v in json.loads(done.stdout).items()}
    except (OSError, subprocess.TimeoutExpired, ValueError, AttributeError) as exc:
        raise RunFailed(f"could not probe the sandbox's layers: {exc}") from None
