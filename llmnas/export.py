"""A candidate as a standalone bundle: model.py (imports only torch), weights, README."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from sandbox.protocol import WEIGHTS_FILE

_LOADER = '''

# --- added by llmnas: load the trained weights -------------------------------------------
INPUT_SHAPE = {input_shape!r}
NUM_CLASSES = {num_classes!r}


def load(weights=None):
    """The trained model in eval mode; ``weights`` defaults to weights.pt beside this file."""
    import os

    import torch

    path = weights or os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights.pt")
    if "build_model" in globals():
        model = build_model(INPUT_SHAPE, NUM_CLASSES)
    else:
        try:
            model = Model(INPUT_SHAPE, NUM_CLASSES)
        except TypeError:
            model = Model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


if __name__ == "__main__":
    import torch

    net = load()
    print(net(torch.zeros(1, *INPUT_SHAPE)).shape)
'''

_README = """# {title}

Candidate `{candidate_id}` from run `{run}`.

| metric | value |
|---|---|
{rows}

## Use

```python
import torch
from model import load            # model.py imports only torch

net = load()                      # reads weights.pt beside model.py
logits = net(torch.zeros(1, *{input_shape!r}))   # input shape {input_shape!r}, {num_classes} classes
```

`weights.safetensors` holds the same tensors for `safetensors.torch.load_file`.
{extra}"""


def export_candidate(
    run_dir: Path,
    candidate_id: str,
    out_dir: Path,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    metrics: dict,
    title: str = "llmnas model",
) -> Path:
    """Write model.py, weights.safetensors, weights.pt and README.md into ``out_dir``."""
    src = Path(run_dir) / "candidates" / candidate_id
    if not (src / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"candidate {candidate_id} has no trained weights in {src}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    code = (src / "model.py").read_text().rstrip() + "\n"
    (out_dir / "model.py").write_text(
        code + _LOADER.format(input_shape=tuple(input_shape), num_classes=num_classes)
    )
    shutil.copyfile(src / WEIGHTS_FILE, out_dir / WEIGHTS_FILE)
    torch.save(load_file(src / WEIGHTS_FILE), out_dir / "weights.pt")
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if v is not None)
    (out_dir / "README.md").write_text(
        _README.format(
            title=title,
            candidate_id=candidate_id,
            run=Path(run_dir).name,
            rows=rows,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            extra="",
        )
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return out_dir


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
