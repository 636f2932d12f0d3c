"""A candidate as a standalone bundle: model.py (imports only torch), weights, README."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from llmnas.errors import UserError
from llmnas.runs.events import EvaluationEvent
from llmnas.runs.layout import CODE, RunLayout
from sandbox.protocol import TORCHSCRIPT_FILE, WEIGHTS_FILE

log = logging.getLogger("llmnas")

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


_TORCHSCRIPT_NOTE = f"""
`{TORCHSCRIPT_FILE}` is a TorchScript trace of the trained model (batch of any size, same input shape):
`torch.jit.load("{TORCHSCRIPT_FILE}")` runs it without model.py. It was produced in the sandbox.
"""


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
    src = RunLayout(run_dir).candidate(candidate_id)
    if not (src / WEIGHTS_FILE).is_file():
        raise UserError(f"candidate {candidate_id} has no trained weights in {src}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    code = (src / CODE).read_text().rstrip() + "\n"
    (out_dir / CODE).write_text(
        code + _LOADER.format(input_shape=tuple(input_shape), num_classes=num_classes)
    )
    shutil.copyfile(src / WEIGHTS_FILE, out_dir / WEIGHTS_FILE)
    torch.save(load_file(src / WEIGHTS_FILE), out_dir / "weights.pt")
    traced = (src / TORCHSCRIPT_FILE).is_file()
    if traced:
        shutil.copyfile(src / TORCHSCRIPT_FILE, out_dir / TORCHSCRIPT_FILE)
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if v is not None)
    (out_dir / "README.md").write_text(
        _README.format(
            title=title,
            candidate_id=candidate_id,
            run=Path(run_dir).name,
            rows=rows,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            extra=_TORCHSCRIPT_NOTE if traced else "",
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


def export_run(run_dir: Path, out_dir: Path, candidate_id: str | None = None) -> Path:
    """Export one evaluated candidate of a run (default: the leaderboard's first)."""
    from llmnas.runs.read import leaderboard
    from llmnas.runs.store import RunStore

    store = RunStore.open(run_dir)
    evaluations = {e.candidate_id: e for e in store.replay().of(EvaluationEvent) if e.ok}
    if candidate_id is None:
        rows = leaderboard(run_dir)
        if not rows:
            raise UserError(f"{run_dir} has no passing candidate to export yet")
        candidate_id = rows[0]["candidate_id"]
    if candidate_id not in evaluations:
        raise UserError(f"--candidate {candidate_id}: no passing evaluation of that id in {run_dir}")
    spec = store.run_info["spec"]
    metrics = evaluations[candidate_id].metrics.numbers()
    return export_candidate(
        run_dir,
        candidate_id,
        out_dir,
        input_shape=tuple(spec["input_shape"]),
        num_classes=spec["num_classes"],
        metrics={"candidate": candidate_id, **metrics},
        title=f"llmnas model {candidate_id}",
    )


class BestExport:
    """End-of-round listener: keeps best/ in step with the archive's best model, and removes it when a
    refinement rules every candidate out."""

    def __init__(self) -> None:
        self.exported: str | None = None

    def __call__(self, search) -> None:
        best, folder = search.archive.best(), search.store.paths.best
        if best is None:
            shutil.rmtree(folder, ignore_errors=True)
            self.exported = None
            return
        if best.candidate_id == self.exported:
            return
        reported = search.evaluator.done[best.candidate_id].metrics.numbers()
        try:
            export_candidate(
                search.store.folder,
                best.candidate_id,
                folder,
                input_shape=search.data.input_shape,
                num_classes=search.data.num_classes,
                metrics={"candidate": best.candidate_id, **reported, "reward": best.reward},
                title=f"Best model so far: {search.spec.text[:80]}",
            )
            self.exported = best.candidate_id
        except Exception as exc:  # noqa: BLE001 - a bad artefact must not end the search
            log.warning("could not write best/ for %s: %s", best.candidate_id, exc)
