"""The artifact as data: what an ONNX graph may be, and what it carries and costs.

Shared by the scoring process (sandbox/score.py), which measures every candidate on its graph, and the
driver's export check (llmnas/results/onnx_check.py); both parse the file in a limited process of their
own. Nothing here runs code from the file: ``onnx`` reads it, shape inference sizes it.

- ``problem``: a plain graph of standard operators (no functions, no custom or contrib domains, no
  external data), valid for ``onnx.checker``, with one input ``input`` shaped (batch, *input_shape) and
  one output.
- ``params``: every number the graph stores, with no exception by name: the elements of all
  initializers (sparse ones included) and of every Constant node, in subgraphs too.
- ``flops``: at batch 1, 2 per multiply-add of Conv, ConvTranspose, Gemm, MatMul and the recurrent
  layers, from the shapes ONNX infers (with data propagation); other operators count nothing, as
  torch's FlopCounterMode. Subgraphs (If, Loop, Scan) are counted once each, every branch included.
  An operator whose shapes cannot be inferred statically counts nothing (the latency is still timed).
- ``depth``: the weight layers, Conv/ConvTranspose/Gemm/recurrent nodes and MatMuls with a stored
  operand: the archive's depth descriptor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from sandbox.protocol import ONNX_INPUT

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", *RECURRENT_GATES})


def nodes(graph) -> Iterator:
    """Every node of a graph and of its subgraphs."""
    for g in _graphs(graph):
        yield from g.node


def _graphs(graph) -> Iterator:
    """A graph and, recursively, the subgraphs its nodes hold (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _graphs(sub)


def problem(model, input_shape: tuple[int, ...]) -> str | None:
    """Why the parsed graph is not a plain standard-operator graph of the expected shape, or None."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    if model.functions:
        return "the ONNX file defines functions (only standard operators are accepted)"
    if any(o.domain not in STANDARD_DOMAINS for o in model.opset_import):
        return f"the ONNX file imports non-standard operator sets: {sorted({o.domain for o in model.opset_import})}"
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


def _elements(tensor) -> int:
    return math.prod(tensor.dims)


def params(model) -> int:
    """Every number the graph stores: initializers, sparse initializers and Constant values."""
    total = 0
    for graph in _graphs(model.graph):
        total += sum(_elements(t) for t in graph.initializer)
        total += sum(_elements(s.values) for s in graph.sparse_initializer)
    for node in nodes(model.graph):
        if node.op_type != "Constant":
            continue
        for attr in node.attribute:
            if attr.HasField("t"):
                total += _elements(attr.t)
            elif attr.HasField("sparse_tensor"):
                total += _elements(attr.sparse_tensor.values)
            else:
                total += len(attr.floats) + len(attr.ints) + len(attr.strings) + 1
    return total


def _shapes(model, input_shape: tuple[int, ...]) -> dict[str, list[int | None]]:
    """Every tensor's shape at batch 1, as far as ONNX infers it."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name == ONNX_INPUT:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, (1, *input_shape), strict=False):
                dim.Clear()
                dim.dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # noqa: BLE001 - an uninferable graph: only the stored shapes are known
        inferred = fixed
    shapes: dict[str, list[int | None]] = {}
    for graph in _graphs(inferred.graph):
        for value in (*graph.input, *graph.output, *graph.value_info):
            dims = value.type.tensor_type.shape.dim
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        for t in graph.initializer:
            shapes[t.name] = list(t.dims)
    return shapes


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def _node_flops(node, shape) -> int:
    """2 x the multiply-adds of one node, or 0 when it has none or its shapes are unknown."""
    op = node.op_type
    ins = [shape(n) for n in node.input]
    out = shape(node.output[0]) if node.output else None
    if op == "Conv" and len(ins) > 1 and _known(ins[1]) and _known(out):
        return 2 * math.prod(out) * math.prod(ins[1][1:])
    if op == "ConvTranspose" and len(ins) > 1 and _known(ins[0]) and _known(ins[1]):
        return 2 * math.prod(ins[0]) * math.prod(ins[1][1:])
    if op in ("MatMul", "Gemm") and _known(ins[0]) and _known(out):
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        k = ins[0][-2] if op == "Gemm" and trans_a and len(ins[0]) > 1 else ins[0][-1]
        return 2 * math.prod(out) * k
    if op in RECURRENT_GATES and _known(ins[0]):
        seq, batch, features = ins[0][-3:] if len(ins[0]) >= 3 else (1, 1, ins[0][-1])
        hidden = next((a.i for a in node.attribute if a.name == "hidden_size"), 0)
        both = any(a.name == "direction" and a.s == b"bidirectional" for a in node.attribute)
        gates = RECURRENT_GATES[op] * hidden * (features + hidden)
        return 2 * seq * batch * gates * (2 if both else 1)
    return 0


def flops(model, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one sample (batch 1) through the graph (see the module docstring)."""
    shapes = _shapes(model, input_shape)
    return sum(_node_flops(node, shapes.get) for node in nodes(model.graph))


def depth(model) -> int:
    """Weight layers of the graph: the archive's depth descriptor."""
    stored = {t.name for g in _graphs(model.graph) for t in g.initializer}
    stored |= {o for n in nodes(model.graph) if n.op_type == "Constant" for o in n.output}
    return sum(
        n.op_type in WEIGHT_OPS or (n.op_type == "MatMul" and any(i in stored for i in n.input))
        for n in nodes(model.graph)
    )
