"""Roofline latency estimate for a device that cannot be reached, calibrated on the host.

Each node of the graph takes max(FLOPs / achievable compute, bytes / bandwidth) plus a per-node dispatch overhead
(the runtime's cost of launching a kernel, which dominates small models on small inputs). The achievable compute
is the profile's peak for the node's precision times an efficiency measured on the host: ONNX Runtime's achieved
GFLOP/s divided by the host profile's nominal peak, for every matrix-product shape of the graph (MatMul for fp32,
MatMulInteger for int8), and for a large 1024^3 product for the other nodes. The dispatch overhead is measured on
the host (a chain of tiny Adds) and scaled by the clock ratio. The estimator's own error
is then measured by estimating the host itself and comparing with a host measurement of the same bundle.
"""

from __future__ import annotations

import functools
import importlib.util
import time

import numpy as np

from edgeft.bench.flops import GraphCost
from edgeft.devices import HOST, DeviceProfile, load_profile
from edgeft.errors import missing_extra


def estimate_ms(cost: GraphCost, profile: DeviceProfile, threads: int, calibration: dict) -> dict:
    """Estimated latency of one run on a device, with the split between compute- and memory-bound time.

    Args:
        cost: per-node FLOPs and bytes at the benchmark's input shape.
        profile: the device (peaks per precision, bandwidth, clock, cores).
        threads: threads used; compute scales with min(threads, cores) / cores.
        calibration: host calibration from `calibrate` (efficiency per precision, overhead per node), with
            `gemm` from `gemm_efficiency` (per matrix-product shape) where measured.
    """
    share = min(threads, profile.cores) / profile.cores
    compute_s = memory_s = 0.0
    for node in cost.nodes:
        efficiency = calibration.get("gemm", {}).get(gemm_key(node)) if node.gemm else None
        efficiency = efficiency or calibration["efficiency"].get(node.precision, calibration["efficiency"]["fp32"])
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
    if importlib.util.find_spec("onnxruntime") is None:
        raise missing_extra("The roofline estimate (host calibration)", "bench")
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


def _median_seconds(session, feeds: dict, budget_s: float = 0.05) -> float:
    """Median time of one run, over enough runs to fill about `budget_s` (5 to 200). The median, like the
    bench's p50, sees the machine's present load."""
    start = time.perf_counter()
    session.run(None, feeds)
    first = time.perf_counter() - start
    times = []
    for _ in range(int(min(max(budget_s / max(first, 1e-6), 5), 200))):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@functools.lru_cache(maxsize=256)
def _matmul_gflops(threads: int, integer: bool, gemm: tuple[int, int, int, int] = (1, 1024, 1024, 1024)) -> float:
    """Achieved GFLOP/s (GOP/s for int8) of one matrix product of shape (batch, M, K, N) in ONNX Runtime:
    a 2-D weight for batch 1 (a linear layer), two batched inputs otherwise (attention)."""
    from onnx import TensorProto, helper, numpy_helper

    batch, rows, inner, cols = gemm
    rng = np.random.default_rng(0)
    lead = [batch] if batch > 1 else []
    if integer:
        a = rng.integers(0, 256, (*lead, rows, inner), dtype=np.uint8)
        b = rng.integers(-127, 128, (*lead, inner, cols), dtype=np.int8)
        op, in_type, b_type, out_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
    else:
        a = rng.standard_normal((*lead, rows, inner), dtype=np.float32)
        b = rng.standard_normal((*lead, inner, cols), dtype=np.float32)
        op, in_type, b_type, out_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("a", in_type, list(a.shape))]
    feeds = {"a": a}
    if batch > 1:
        inputs.append(helper.make_tensor_value_info("b", b_type, list(b.shape)))
        feeds["b"] = b
    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "matmul", inputs,
                              [helper.make_tensor_value_info("y", out_type, [*lead, rows, cols])],
                              [] if batch > 1 else [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    seconds = _median_seconds(_session(model, threads), feeds)
    return 2 * batch * rows * inner * cols / seconds / 1e9


def gemm_efficiency(cost: GraphCost, threads: int) -> dict[str, float]:
    """Host-measured efficiency of every distinct matrix-product shape of the graph: achieved GFLOP/s at that
    shape over the host's nominal peak. Small products (attention heads, batch 1) reach far less than a large one,
    and about the same fraction of a device's peak as of the host's."""
    host = load_profile(HOST)
    share = min(threads, host.cores) / host.cores
    result = {}
    for node in cost.nodes:
        if node.gemm and node.precision in ("fp32", "int8") and gemm_key(node) not in result:
            achieved = _matmul_gflops(threads, node.precision == "int8", node.gemm)
            result[gemm_key(node)] = achieved / (host.peak(node.precision) * share)
    return result


def gemm_key(node) -> str:
    return f"{node.precision}:{'x'.join(str(d) for d in node.gemm)}"


def _overhead_us(threads: int, nodes: int = 200) -> float:
    """Per-node cost of a chain of element-wise Adds on 64 floats: the runtime's dispatch overhead."""
    from onnx import TensorProto, helper

    chain = [helper.make_node("Add", [f"x{i}", f"x{i}"], [f"x{i + 1}"]) for i in range(nodes)]
    graph = helper.make_graph(chain, "chain", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info(f"x{nodes}", TensorProto.FLOAT, [1, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    # Unoptimised, so the chain is not folded into fewer kernels.
    session = _session(model, threads, optimize=False)
    seconds = _median_seconds(session, {"x0": np.ones((1, 64), np.float32)})
    return seconds / nodes * 1e6
