"""FLOPs and bytes per node of an ONNX graph at a given batch and sequence length (for the roofline estimate).

Shapes come from ONNX Runtime's symbolic shape inference (it resolves the shape arithmetic of transformer graphs,
which ONNX's own inference leaves unknown at Expand/Where), or ONNX's inference with data propagation where ONNX
Runtime is absent, after the symbolic input dimensions are fixed. Counting conventions: a multiply-accumulate is 2 FLOPs;
element-wise ops cost their output size times a small factor; a node's bytes are its inputs read plus its
outputs written, except Gather, which reads only the rows it gathers (the embedding table is not streamed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeft.errors import EdgeftError, missing_extra

MATMUL_OPS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
              "MatMulNBits", "FusedMatMul"}
INT8_OPS = {"MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "ConvInteger",
            "QLinearConv"}
# Ops that only move or describe data: bytes, no arithmetic.
DATA_OPS = {"Shape", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Transpose", "Slice", "Gather", "Cast",
            "Constant", "ConstantOfShape", "Identity", "Expand", "Flatten", "Split", "Range", "Where",
            "Equal", "Less", "Not", "NonZero", "Size", "GatherElements", "Tile"}
# FLOPs per output element of the common non-matmul ops (approximate instruction counts).
ELEMENT_COST = {"Softmax": 5, "LayerNormalization": 8, "SkipLayerNormalization": 9, "Erf": 8, "Gelu": 10,
                "FastGelu": 10, "BiasGelu": 11, "Tanh": 8, "Sqrt": 4, "Pow": 4, "ReduceMean": 1, "Div": 1,
                "DynamicQuantizeLinear": 4, "QuantizeLinear": 2, "DequantizeLinear": 2}


@dataclass
class NodeCost:
    """One node's arithmetic and memory traffic."""

    name: str
    op: str
    flops: float
    bytes: float
    precision: str
    gemm: tuple[int, int, int, int] | None = None
    """Matrix products: (batch, M, K, N) as the kernel sees it (a 2-D weight folds the batch into M)."""


@dataclass
class GraphCost:
    """Totals of a graph at one input shape; `uncounted` lists ops whose cost is unknown (counted as data moves)."""

    nodes: list[NodeCost]
    weight_bytes: int
    uncounted: list[str] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return sum(node.flops for node in self.nodes)

    @property
    def bytes(self) -> float:
        return sum(node.bytes for node in self.nodes)

    def flops_by(self, key: str) -> dict[str, float]:
        """FLOPs summed by `precision` or `op`."""
        totals: dict[str, float] = {}
        for node in self.nodes:
            totals[getattr(node, key)] = totals.get(getattr(node, key), 0.0) + node.flops
        return totals

    @property
    def matmul_flops(self) -> float:
        return sum(node.flops for node in self.nodes if node.op in MATMUL_OPS)


def bundle_graph(bundle: Path) -> Path:
    """The ONNX graph of a bundle; other formats cannot be counted (yet)."""
    graph = Path(bundle) / "model.onnx"
    if not graph.is_file():
        raise EdgeftError(f"{bundle}: the roofline estimate counts FLOPs from an ONNX graph (model.onnx), "
                          "and this bundle has none; export an ONNX bundle of the same model to estimate it")
    return graph


def count(model_path: str | Path, batch: int = 1, seq_len: int = 128) -> GraphCost:
    """FLOPs and bytes of every node of an ONNX model for inputs of shape (batch, seq_len)."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError as error:
        raise missing_extra("FLOP counting from ONNX graphs", "bench") from error
    model = onnx.load(str(model_path))
    for value in model.graph.input:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param or not dim.dim_value:
                dim.dim_value = batch if index == 0 else seq_len
    # Clear stale intermediate shapes (an exporter's symbolic ones) so inference recomputes them concretely.
    del model.graph.value_info[:]
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except ImportError:
        model = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[list[int], int]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor = value.type.tensor_type
        dims = [dim.dim_value if dim.dim_value > 0 else None for dim in tensor.shape.dim]
        shapes[value.name] = (dims, tensor.elem_type)
    weight_bytes = 0
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init) if not init.external_data else None
        dims = list(init.dims)
        shapes[init.name] = (dims, init.data_type)
        weight_bytes += array.nbytes if array is not None else _size(dims) * _itemsize(init.data_type)
    nodes, uncounted = [], set()
    for node in model.graph.node:
        cost = _node_cost(node, shapes)
        if cost is None:
            uncounted.add(node.op_type)
            continue
        nodes.append(cost)
    return GraphCost(nodes=nodes, weight_bytes=weight_bytes, uncounted=sorted(uncounted))


def _node_cost(node, shapes) -> NodeCost | None:
    ins = [shapes.get(name) for name in node.input if name]
    outs = [shapes.get(name) for name in node.output if name]
    if any(item is None or None in item[0] for item in outs):
        return None
    out_elems = sum(_size(dims) for dims, _ in outs)
    out_bytes = sum(_size(dims) * _itemsize(kind) for dims, kind in outs)
    known_ins = [item for item in ins if item is not None and None not in item[0]]
    in_bytes = sum(_size(dims) * _itemsize(kind) for dims, kind in known_ins)
    op = node.op_type
    precision = "int8" if op in INT8_OPS else ("fp16" if outs[0][1] == 10 else "fp32")
    gemm = None
    if op in MATMUL_OPS:
        inner = _inner_dim(node, ins)
        if inner is None:
            return None
        flops = 2.0 * _size(outs[0][0]) * inner
        gemm = _gemm_shape(node, ins, outs[0][0], inner)
    elif op in DATA_OPS:
        flops = 0.0
        if op == "Gather":
            in_bytes = out_bytes + sum(_size(dims) * _itemsize(kind) for dims, kind in known_ins[1:])
    else:
        flops = float(out_elems * ELEMENT_COST.get(op, 1))
    return NodeCost(node.name or op, op, flops, float(in_bytes + out_bytes), precision, gemm)


def _gemm_shape(node, ins, out: list[int], inner: int) -> tuple[int, int, int, int]:
    rows = out[-2] if len(out) >= 2 else 1
    batch = _size(out[:-2])
    second = ins[1] if len(ins) > 1 else None
    if node.op_type == "MatMulNBits" or (second is not None and len(second[0]) <= 2):
        return (1, batch * rows, inner, out[-1])
    return (batch, rows, inner, out[-1])


def _inner_dim(node, ins) -> int | None:
    """K of a matrix product: the shared dimension of its two operands (None when its shape is unknown)."""
    if node.op_type == "MatMulNBits":
        return next(attr.i for attr in node.attribute if attr.name == "K")
    if not ins or ins[0] is None or not ins[0][0]:
        return None
    first = ins[0][0]
    if node.op_type == "Gemm" and any(attr.name == "transA" and attr.i for attr in node.attribute):
        return first[0]
    return first[-1]


def _size(dims: list[int]) -> int:
    return int(np.prod(dims)) if dims else 1


def _itemsize(elem_type: int) -> int:
    from onnx import helper

    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1
