"""Check an ONNX file a worker wrote before an export hands it to a user.

The scoring process in the sandbox writes ``model.onnx`` (sandbox/score.py); a candidate may have written
anything there instead. This module is the only driver code that reads it, and it never does so in the
driver's own process: ``check_onnx`` starts a child interpreter (``python -m llmnas.runs.onnx_check``)
with a scrubbed environment, a timeout, and limits on memory and CPU time that it sets on itself before
it opens the file. The child answers with one line of JSON. Parsing the file (onnx, onnxruntime) is
parsing untrusted data: no code of the candidate runs, but a parser bug could be reached, so the parsing
happens where a crash, a hang or a memory blow-up costs only the check.

The child accepts a file only when:

- it parses and passes ``onnx.checker``; it references no external data (a path the file would make
  onnxruntime read) and defines no functions; every node and opset is in the standard ``ai.onnx``
  domain (no custom operators, no ``com.microsoft`` contrib operators);
- onnxruntime loads it with the default CPU provider, one thread, no custom-op libraries;
- it has one input named ``input`` shaped ``(batch, *input_shape)`` and one output, and run on the
  validation inputs (one row, then batches of other sizes) it reproduces the sandbox's own
  ``val_pred.npy`` within ``RTOL``/``ATOL``.

Anything else rejects the file, with a note that says why; the export then holds no ONNX.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbox.protocol import ARTEFACT_BYTES, ONNX_INPUT

RTOL, ATOL = 1e-3, 1e-4  # ATOL scales with the largest logit: see _compare
CHECK_TIMEOUT_S = 120.0
CHECK_MEMORY_BYTES = 4 << 30  # plus a few times the file's size
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the llmnas package


@dataclass(frozen=True)
class OnnxCheck:
    ok: bool
    note: str  # why it was rejected, or what was checked


def check_onnx(
    path: Path,
    x_val: np.ndarray,
    val_pred: np.ndarray,
    input_shape: tuple[int, ...],
    *,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> OnnxCheck:
    """Whether the ONNX file at ``path`` is a standard graph that reproduces ``val_pred`` on ``x_val``."""
    path = Path(path)
    try:
        size = path.lstat().st_size
    except OSError:
        return OnnxCheck(False, "no ONNX file")
    if not path.is_file() or path.is_symlink():
        return OnnxCheck(False, "the ONNX file is not a regular file")
    if size > ARTEFACT_BYTES:
        return OnnxCheck(False, f"the ONNX file is over {ARTEFACT_BYTES:,} bytes")
    with tempfile.TemporaryDirectory(prefix="llmnas-onnx-check-") as tmp:
        folder = Path(tmp)
        np.save(folder / "x.npy", np.ascontiguousarray(x_val, dtype=np.float32), allow_pickle=False)
        np.save(folder / "pred.npy", np.ascontiguousarray(val_pred, dtype=np.float32), allow_pickle=False)
        request = {
            "onnx": str(path.resolve()),
            "x": str(folder / "x.npy"),
            "pred": str(folder / "pred.npy"),
            "input_shape": list(input_shape),
            "memory_bytes": CHECK_MEMORY_BYTES + 4 * size,
            "cpu_s": int(timeout_s) + 1,
        }
        env = {  # nothing of the driver's environment (keys, tokens) reaches the process that parses
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(_ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update({v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
        try:
            done = subprocess.run(
                [sys.executable, "-s", "-m", "llmnas.runs.onnx_check"],  # -s: no user site-packages
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                cwd=folder,
            )
        except subprocess.TimeoutExpired:
            return OnnxCheck(False, f"checking the ONNX file took over {timeout_s:g} s")
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return OnnxCheck(False, f"the ONNX check failed: {why[:200]}")
    return OnnxCheck(answer["ok"], str(answer.get("note", ""))[:400])


# --------------------------------------------------------------------------- the child
def _limit_self(memory_bytes: int, cpu_s: int) -> None:
    """Set before the file is opened: a hostile graph can exhaust only this process."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it writes nothing but its answer on stdout


def _structure_problem(model, input_shape: tuple[int, ...]) -> str | None:
    """Why the parsed graph is not a plain standard-operator graph of the expected shape, or None."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    if model.functions:
        return "the ONNX file defines functions (only standard operators are accepted)"
    if any(o.domain not in STANDARD_DOMAINS for o in model.opset_import):
        return f"the ONNX file imports non-standard operator sets: {sorted({o.domain for o in model.opset_import})}"

    def nodes(graph):
        for node in graph.node:
            yield node
            for attr in node.attribute:
                for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                    yield from nodes(sub)

    custom = sorted(
        {f"{n.domain}.{n.op_type}" for n in nodes(model.graph) if n.domain not in STANDARD_DOMAINS}
    )
    if custom:
        return f"the ONNX file uses custom operators: {custom[:5]}"
    if any(uses_external_data(t) for t in _get_all_tensors(model)):
        return "the ONNX file references external data files"
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - any checker failure rejects the file
        return f"the ONNX file is not valid ONNX: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or inputs[0].name != ONNX_INPUT or len(model.graph.output) != 1:
        return f"the ONNX graph must have one input named {ONNX_INPUT!r} and one output"
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != len(input_shape) + 1 or shape[1:] != list(input_shape):
        return f"the ONNX input is shaped {shape}, not (batch, *{tuple(input_shape)})"
    return None


def _compare(got: np.ndarray, expected: np.ndarray) -> str | None:
    if got.shape != expected.shape:
        return f"the ONNX model gives outputs shaped {got.shape}, the sandbox predicted {expected.shape}"
    if not np.isfinite(got).all():
        return "the ONNX model gives non-finite outputs"
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    diff = float(np.abs(got - expected).max(initial=0.0))
    if not np.allclose(got, expected, rtol=RTOL, atol=ATOL * scale):
        return f"the ONNX model does not reproduce the sandbox's validation predictions (max difference {diff:.3g})"
    return None


def verify(request: dict) -> dict:
    """The child's whole job: parse, inspect, load, run, compare. Returns the JSON answer."""
    input_shape = tuple(int(d) for d in request["input_shape"])
    x = np.load(request["x"], allow_pickle=False)
    expected = np.load(request["pred"], allow_pickle=False)
    with open(request["onnx"], "rb") as f:
        data = f.read(ARTEFACT_BYTES + 1)
    if len(data) > ARTEFACT_BYTES:
        return {"ok": False, "note": "the ONNX file is too large"}
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        return {"ok": False, "note": f"cannot check the ONNX file: {exc} (pip install 'llmnas[onnx]')"}
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - not a protobuf, truncated, ...
        return {"ok": False, "note": f"the ONNX file does not parse: {type(exc).__name__}"}
    problem = _structure_problem(model, input_shape)
    if problem:
        return {"ok": False, "note": problem}
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        # One row alone, then batches of another size: the batch axis must be free.
        chunks = [x[:1], *(x[i : i + 64] for i in range(1, len(x), 64))] if len(x) else []
        outs = [session.run(None, {ONNX_INPUT: c})[0] for c in chunks]
    except Exception as exc:  # noqa: BLE001 - onnxruntime refuses or fails to run it
        return {
            "ok": False,
            "note": f"onnxruntime cannot run the ONNX file: {str(exc).splitlines()[0][:200]}",
        }
    got = np.concatenate(outs).astype(np.float32) if outs else np.zeros_like(expected)
    problem = _compare(got, expected)
    if problem:
        return {"ok": False, "note": problem}
    return {
        "ok": True,
        "note": f"reproduces the sandbox's predictions on {len(x)} validation inputs with onnxruntime (CPU)",
    }


def main() -> int:
    request = json.loads(sys.stdin.read())
    _limit_self(int(request["memory_bytes"]), int(request["cpu_s"]))
    try:
        answer = verify(request)
    except Exception as exc:  # noqa: BLE001 - our own failure still answers
        answer = {"ok": False, "note": f"the ONNX check failed: {type(exc).__name__}: {str(exc)[:200]}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
