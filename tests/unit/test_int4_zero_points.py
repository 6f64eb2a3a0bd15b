"""HQQ's float zero points become 4-bit integer ones plus a correction: the same products, on the fast kernel."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeft.export.onnx import integer_zero_points


def _matmul_nbits(k: int, n: int, block: int, rng) -> onnx.ModelProto:
    blocks = k // block
    weights = numpy_helper.from_array(rng.integers(0, 256, (n, blocks, block // 2), dtype=np.uint8), "w")
    scales = numpy_helper.from_array(rng.random(n * blocks, dtype=np.float32), "s")
    zeros = numpy_helper.from_array((rng.random(n * blocks, dtype=np.float32) * 17 - 1).astype(np.float32), "z")
    node = helper.make_node("MatMulNBits", ["x", "w", "s", "z"], ["y"], domain="com.microsoft", K=k, N=n, bits=4,
                            block_size=block)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [weights, scales, zeros])
    return helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17),
                                                                 helper.make_opsetid("com.microsoft", 1)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("k, blocks_odd", [(96, True), (128, False)])
@pytest.mark.parametrize("shape", [(1,), (2, 5)])
def test_integer_zero_points_give_the_float_zero_points_products(k, blocks_odd, shape):
    # setup: a MatMulNBits with float zero points (some outside the 4-bit range), an odd and an even block count
    rng = np.random.default_rng(0)
    model = _matmul_nbits(k, 24, 32, rng)
    x = rng.standard_normal((*shape, k)).astype(np.float32)
    expected = _run(model, x)
    # execute
    converted = integer_zero_points(onnx.ModelProto.FromString(model.SerializeToString()))
    # assert: integer zero points in the graph, the same outputs
    zero_points = {i.name: i for i in converted.graph.initializer}[converted.graph.node[0].input[3]]
    assert zero_points.data_type == TensorProto.UINT8 and (k // 32 % 2 == 1) == blocks_odd
    np.testing.assert_allclose(_run(converted, x), expected, rtol=1e-4, atol=1e-3)
