"""Check an ONNX file a worker wrote before an export hands it to a user.

The training process in the sandbox writes ``model.onnx``, the artifact every candidate is scored on
(sandbox/artifact.py, sandbox/score.py); a candidate may have written anything there instead. This module is the only driver code that reads it, and it never does so in the
driver's own process: ``check_onnx`` asks this process's warm checker (``python -m
llmnas.results.onnx_check``, started once with a scrubbed environment; it imports onnx and onnxruntime
and never opens a file itself), which forks one child per check; the child sets limits on memory and CPU
time on itself before it opens the file, and is killed at the timeout. The checker answers with one line
of JSON. Parsing the file (onnx, onnxruntime) is parsing untrusted data: no code of the candidate runs,
but a parser bug could be reached, so the parsing happens where a crash, a hang or a memory blow-up costs
only the check.

The child accepts a file only when:

- it parses and is a plain standard-operator graph (``sandbox/graph.problem``, the scorer's rule): it
  passes ``onnx.checker``, references no external data and defines no functions, and every node and
  opset is in the standard ``ai.onnx`` domain;
- onnxruntime loads it with the default CPU provider, one thread, no custom-op libraries;
- it has one input named ``input`` shaped ``(batch, *input_shape)`` and one output, and run on the
  validation inputs (one row, then batches of other sizes) it reproduces the sandbox's own
  ``val_pred.npy`` within ``RTOL``/``ATOL``.

With a preprocessing (``task/preprocess.Preprocessing`` as JSON: plain numbers, never code), the child
first prepends it to the graph as standard operators (Transpose, Reshape, Div; IsNaN/Where for missing
values, Gather/Equal/Cast/Where for a table's one-hot categories; for standardisation Cast/Sub/Div in
float64: the same arithmetic as ``preprocess.apply``), so that the graph takes raw samples shaped
``(batch, *sample_shape)`` (a table's: its columns as ``preprocess.raw_inputs`` reads them, numbers and
category codes, NaN for missing); the composed graph must pass every check above on the raw
validation samples, and the child writes it for the export. The driver copies those bytes; it never
parses them.

Anything else rejects the file, with a note that says why; the export then holds no ONNX.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmnas.execute.local import offline_prefix
from llmnas.task.preprocess import Preprocessing, table_layout
from sandbox import graph as artifact_graph
from sandbox.protocol import ARTEFACT_BYTES, ONNX_INPUT

RTOL, ATOL = 1e-3, 1e-4  # ATOL scales with the largest logit: see _compare
CHECK_TIMEOUT_S = 120.0
_MARGIN_S = 30.0  # the checker's own answer after its child's timeout
CHECK_MEMORY_BYTES = 4 << 30  # plus a few times the file's size
COMPOSED_FILE = "composed.onnx"  # the child's graph with the preprocessing, in its temporary folder
PRE = "llmnas_pre_"  # the prefix of every name the preprocessing adds to a graph
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
    preprocessing: dict | None = None,
    out: Path | None = None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> OnnxCheck:
    """Whether the ONNX file at ``path`` is a standard graph that reproduces ``val_pred`` on ``x_val``.

    With ``preprocessing`` (``Preprocessing.to_json()``), ``x_val`` holds the raw validation samples and
    the check is of the graph with the preprocessing prepended, which is written to ``out`` when it
    passes."""
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
            "preprocessing": preprocessing,
            "out": str(folder / COMPOSED_FILE) if preprocessing is not None else None,
        }
        check = _ask({**request, "cwd": str(folder), "timeout_s": timeout_s})
        if check.ok and out is not None:
            composed = folder / COMPOSED_FILE if preprocessing is not None else path
            shutil.copyfile(composed, out)  # bytes only: the driver never parses them
    return check


class _Checker:
    """The warm checker process and the one request it may have in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def ask(self, request: dict) -> OnnxCheck:
        timeout_s = float(request["timeout_s"])
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = _start_checker()
            line = ""
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                if select.select([self.proc.stdout], [], [], timeout_s + _MARGIN_S)[0]:
                    line = self.proc.stdout.readline()
            except (OSError, ValueError):
                pass
            if not line:  # the checker itself hung or died: the next check starts a new one
                # its group, the child it forked included (not yet reaped: the id is still the checker's)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                self.proc = None
                return OnnxCheck(False, "the ONNX check failed: the checker process stopped answering")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            return OnnxCheck(False, f"the ONNX check failed: {line.strip()[:200]}")
        return OnnxCheck(answer["ok"], str(answer.get("note", ""))[:400])


def _start_checker() -> subprocess.Popen:
    env = {  # nothing of the driver's environment (keys, tokens) reaches the process that parses
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return subprocess.Popen(
        [*offline_prefix(), sys.executable, "-s", "-m", "llmnas.results.onnx_check"],  # -s: no user site
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd="/",
        start_new_session=True,
    )


_ask = _Checker().ask


# --------------------------------------------------------------------------- the child
def _limit_self(memory_bytes: int, cpu_s: int, writes: bool) -> None:
    """Set before the file is opened: a hostile graph can exhaust only this process."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = 2 * ARTEFACT_BYTES if writes else 0  # nothing but its answer, and the composed graph
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def _prepend(model, pre: Preprocessing) -> str | None:
    """Prepend ``pre`` to the graph (in place) as standard operators: the graph's input becomes raw
    samples shaped (batch, *sample_shape). None, or why it cannot be done."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    used = {n for node in artifact_graph.nodes(graph) for n in (*node.input, *node.output)}
    used |= {v.name for v in (*graph.input, *graph.output, *graph.initializer)}
    if any(n.startswith(PRE) for n in used):
        return f"the ONNX graph uses names llmnas keeps for the preprocessing ({PRE}...)"
    nodes, constants = [], []

    def add(op: str, *inputs, **attrs) -> str:
        """A node of ``op`` on names and constants (numpy arrays); its output's name."""
        names = []
        for value in inputs:
            if isinstance(value, np.ndarray):
                constants.append(numpy_helper.from_array(value, f"{PRE}c{len(constants)}"))
                value = constants[-1].name
            names.append(value)
        nodes.append(helper.make_node(op, names, [f"{PRE}{len(nodes)}"], **attrs))
        return nodes[-1].output[0]

    current, rank = ONNX_INPUT, len(pre.sample_shape)
    if pre.fill is not None or pre.categories is not None:
        current = add("Reshape", current, np.array([-1, *pre.sample_shape], np.int64))
    if pre.fill is not None:  # missing values (NaN) become the training split's medians
        fill = np.array([np.nan if v is None else v for v in pre.fill], np.float32)
        current = add("Where", add("IsNaN", current), fill.reshape(pre.sample_shape), current)
    if pre.categories is not None:  # category codes one-hot, numbers as they are
        source, code, number = table_layout(pre)
        picked = add("Gather", current, source, axis=1)
        one_hot = add("Cast", add("Equal", picked, code), to=TensorProto.FLOAT)
        current = add("Where", number, picked, one_hot)
    if pre.channels_last:
        current = add("Transpose", current, perm=[0, rank, *range(1, rank)])
    current = add("Reshape", current, np.array([-1, *pre.input_shape], np.int64))
    if pre.divide is not None:
        current = add("Div", current, np.array(pre.divide, np.float32))
    if pre.mean is not None:  # in float64, as preprocess.apply
        current = add("Cast", current, to=TensorProto.DOUBLE)
        current = add("Sub", current, np.array(pre.mean, np.float64).reshape(pre.input_shape))
        current = add("Div", current, np.array(pre.std, np.float64).reshape(pre.input_shape))
        current = add("Cast", current, to=TensorProto.FLOAT)
    for node in artifact_graph.nodes(graph):
        node.input[:] = [current if n == ONNX_INPUT else n for n in node.input]
    original = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *original])
    graph.initializer.extend(constants)
    raw = helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", *pre.sample_shape])
    for i, value in enumerate(graph.input):
        if value.name == ONNX_INPUT:
            graph.input[i].CopyFrom(raw)
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
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - not a protobuf, truncated, ...
        return {"ok": False, "note": f"the ONNX file does not parse: {type(exc).__name__}"}
    why = artifact_graph.problem(model, input_shape)
    composed = request.get("preprocessing") is not None
    if composed and why is None:
        pre = Preprocessing.from_json(request["preprocessing"])
        why = _prepend(model, pre) or artifact_graph.problem(model, pre.sample_shape)
        data = model.SerializeToString()
    if why:
        return {"ok": False, "note": why}
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
    why = _compare(got, expected)
    if why:
        return {"ok": False, "note": why}
    if composed and request.get("out"):
        with open(request["out"], "wb") as f:
            f.write(data)
    inputs = "raw validation samples (preprocessing in the graph)" if composed else "validation inputs"
    return {
        "ok": True,
        "note": f"reproduces the sandbox's predictions on {len(x)} {inputs} with onnxruntime (CPU)",
    }


def _check_in_child(request: dict) -> dict:
    """Fork a child that limits itself, then verifies; its answer, or why there is none."""
    timeout_s = float(request["timeout_s"])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.chdir(request["cwd"])
            _limit_self(int(request["memory_bytes"]), int(request["cpu_s"]), bool(request.get("out")))
            try:
                answer = verify(request)
            except Exception as exc:  # noqa: BLE001 - our own failure still answers
                answer = {
                    "ok": False,
                    "note": f"the ONNX check failed: {type(exc).__name__}: {str(exc)[:200]}",
                }
            os.write(write_end, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    pidfd = os.pidfd_open(pid)
    try:
        ended = select.select([pidfd], [], [], timeout_s)[0]
    finally:
        os.close(pidfd)
    if not ended:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)  # it is ours and not yet reaped: the pid cannot have been reused
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    if not ended:
        return {"ok": False, "note": f"checking the ONNX file took over {timeout_s:g} s"}
    try:
        return json.loads(data)
    except ValueError:
        code = os.waitstatus_to_exitcode(status)
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return {"ok": False, "note": f"the ONNX check failed: its process ended without an answer ({why})"}


def main() -> int:
    """The warm checker: onnx and onnxruntime imported once, one forked child per request line."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(_check_in_child(json.loads(line))) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
