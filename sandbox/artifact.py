"""The artifact, written: the trained model as an ONNX graph, at the end of the training process.

Training is the only phase that runs candidate Python; this is its last step. The model is exported
in eval mode on the CPU, traced at batch 2 with the batch axis left free, with opset ``OPSET`` and the
names of sandbox/protocol.py. Whatever the candidate's code does while it is traced (a branch taken only
under ``torch.onnx.is_in_onnx_export()``, a file written in the graph's place) ends up in the file, and
the file is what is scored and shipped: a trick changes the graph that is measured, not the measurement.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx  # noqa: F401 - the TorchScript-based exporter needs it: imported before any candidate code
import torch

from sandbox.candidate import CandidateFailure
from sandbox.protocol import ONNX_INPUT, ONNX_OUTPUT, Stage

OPSET = 17
_EXPORT = torch.onnx.export  # bound before any candidate code runs


def write(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` (moved to the CPU, eval mode) to ``path``; a model that does not export fails the
    candidate at stage export with the exporter's reason in one line."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _EXPORT(
                model.cpu().eval(),
                (example.cpu(),),
                str(path),
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # noqa: BLE001 - any exporter failure is the candidate's
        path.unlink(missing_ok=True)
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise CandidateFailure(
            Stage.export, f"the trained model does not export to ONNX: {type(exc).__name__}: {reason}"
        ) from None
