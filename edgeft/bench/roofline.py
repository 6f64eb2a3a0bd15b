"""Roofline latency estimate for a device that cannot be reached, calibrated on the host.

Each node of the graph takes max(FLOPs / achievable compute, bytes / bandwidth) plus a per-node dispatch overhead
(the runtime's cost of launching a kernel, which dominates small models on small inputs). The achievable compute
is the profile's peak for the node's precision times an efficiency measured on the host: ONNX Runtime's achieved
GFLOP/s on a large MatMul (fp32) and MatMulInteger (int8) divided by the host profile's nominal peak. The dispatch
overhead is measured on the host (a chain of tiny Adds) and scaled by the clock ratio. The estimator's own error
is then measured by estimating the host itself and comparing with a host measurement of the same bundle.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from edgeft.bench.flops import GraphCost
from edgeft.devices import HOST, DeviceProfile, load_profile


def estimate_ms(cost: GraphCost, profile: DeviceProfile, threads: int, calibration: dict) -> dict:
    """Estimated latency of one run on a device, with the split between compute- and memory-bound time.

    Args:
        cost: per-node FLOPs and bytes at the benchmark's input shape.
        profile: the device (peaks per precision, bandwidth, clock, cores).
        threads: threads used; compute scales with min(threads, cores) / cores.
        calibration: host calibration from `calibrate` (efficiency per precision, overhead per node).
    """
    share = min(threads, profile.cores) / profile.cores
    compute_s = memory_s = 0.0
    for node in cost.nodes:
        efficiency = calibration["efficiency"].get(node.precision, calibration["efficiency"]["fp32"])
        compute = node.flops / (profile.peak(node.precision) * 1e9 * share * efficiency)
        memory = node.bytes / (profile.memory_bandwidth_gbs * 1e9)
        if compute >= memory:
            compute_s += compute
        else:
            memory_s += memory
    overhead_s = len(cost.nodes) * calibration["overhead_us_per_node"] * 1e-6 * calibration["clock_ghz"] / \
        profile.clock_ghz
    total = compute_s + memory_s + overhead_s
    return {"latency_ms": total * 1e3, "compute_bound_ms": compute_s * 1e3, "memory_bound_ms": memory_s * 1e3,
            "overhead_ms": overhead_s * 1e3}


@functools.lru_cache(maxsize=4)
def calibrate(threads: int) -> dict:
    """Measure this host (about a second), once per process and thread count.

    Not cached on disk on purpose: the host check that measures the estimator's error runs now, under the
    machine's present load, and the calibration must see the same conditions.

    Returns:
        {"efficiency": {"fp32": x, "int8": y}, "achieved_gflops": {...}, "overhead_us_per_node": z, "clock_ghz": c}
    """
    host = load_profile(HOST)
    achieved = {"fp32": _matmul_gflops(threads, integer=False), "int8": _matmul_gflops(threads, integer=True)}
    share = min(threads, host.cores) / host.cores
    return {
        "achieved_gflops": achieved,
        "efficiency": {name: value / (host.peak(name) * share) for name, value in achieved.items()},
        "overhead_us_per_node": _overhead_us(threads),
        "clock_ghz": host.clock_ghz,
    }


def _session(model, threads: int, optimize: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _best_seconds(session, feeds: dict, repeats: int) -> float:
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return best


def _matmul_gflops(threads: int, integer: bool, size: int = 1024, repeats: int = 8) -> float:
    """Achieved GFLOP/s (GOP/s for int8) of one size^3 matrix product in ONNX Runtime."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        weight = rng.integers(-127, 128, (size, size), dtype=np.int8)
        a = rng.integers(0, 256, (size, size), dtype=np.uint8)
        node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
        in_type, out_type = TensorProto.UINT8, TensorProto.INT32
    else:
        weight = rng.standard_normal((size, size), dtype=np.float32)
        a = rng.standard_normal((size, size), dtype=np.float32)
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        in_type, out_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([node], "matmul", [helper.make_tensor_value_info("a", in_type, [size, size])],
                              [helper.make_tensor_value_info("y", out_type, [size, size])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    seconds = _best_seconds(_session(model, threads), {"a": a}, repeats)
    return 2 * size**3 / seconds / 1e9


def _overhead_us(threads: int, nodes: int = 200) -> float:
    """Per-node cost of a chain of element-wise Adds on 64 floats: the runtime's dispatch overhead."""
    from onnx import TensorProto, helper

    chain = [helper.make_node("Add", [f"x{i}", f"x{i}"], [f"x{i + 1}"]) for i in range(nodes)]
    graph = helper.make_graph(chain, "chain", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info(f"x{nodes}", TensorProto.FLOAT, [1, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    # Unoptimised, so the chain is not folded into fewer kernels.
    session = _session(model, threads, optimize=False)
    seconds = _best_seconds(session, {"x0": np.ones((1, 64), np.float32)}, 50)
    return seconds / nodes * 1e6
