"""Quality bar of the default training budget, through `llmnas eval` exactly as a user runs it.

The MNIST-1D paper's CNN (~5k params; 94% in the paper after 8000 steps) must reach >= 90% test
accuracy, and a small CNN on 8x8 digits >= 97%, with the default budget.

    python bench/quality.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MODELS = Path(__file__).parent / "models"
CASES = (("mnist1d", MODELS / "mnist1d_paper_cnn.py", 0.90), ("digits", MODELS / "digits_small_cnn.py", 0.97))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    passed = True
    for data, model, target in CASES:
        accs = []
        for seed in args.seeds:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "llmnas.cli",
                    "eval",
                    str(model),
                    "--data",
                    data,
                    "--seed",
                    str(seed),
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            m = json.loads(out)["metrics"]
            accs.append(m["test_acc"])
            print(
                f"{data:8} {model.name:24} seed {seed}: test {m['test_acc']:.4f} val {m['val_acc']:.4f} "
                f"params {m['params']:,} steps {m['train_steps']} in {m['train_seconds']:.1f} s"
            )
        ok = min(accs) >= target
        passed &= ok
        print(
            f"{data:8} min test {min(accs):.4f} mean {sum(accs) / len(accs):.4f}  target >= {target}: "
            f"{'PASS' if ok else 'FAIL'}"
        )
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
