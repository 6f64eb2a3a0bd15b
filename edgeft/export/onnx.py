"""ONNX export (torch.onnx, dynamic batch and sequence) and the ONNX Runtime quantizers `compress` reuses."""

from __future__ import annotations

from pathlib import Path

from edgeft.errors import missing_extra

# Opset 17 has LayerNormalization as one op (fewer nodes than the decomposed form) and is read by every
# onnxruntime since 1.13, so bundles also run on the older ORT builds that ARM boards ship.
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask")
PRECISIONS = ("fp32", "int8", "int4")


def export_fp32(model, path: Path, sample: dict) -> None:
    """Trace the model to ONNX with dynamic batch and sequence axes; `logits` (axes as its task names them) is the
    one output."""
    import torch

    from edgeft.tasks import get_task

    try:
        import onnx  # noqa: F401  (torch.onnx needs it to serialize)
    except ImportError:
        raise missing_extra("ONNX export", "export") from None
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    output_axes = get_task(model.head_config.task).output_axes
    axes["logits"] = {index: name for index, name in enumerate(output_axes) if name in ("batch", "sequence")}
    args = tuple(torch.as_tensor(sample[name]) for name in INPUT_NAMES)
    with torch.no_grad():
        # The TorchScript exporter: parity 2e-7 on MiniLM and a graph quantize_dynamic accepts as is (STACK.md).
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """ORT dynamic int8: int8 weights per channel, activations quantized per call (the safe default here)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    # Stale shape annotations make quantize_dynamic fail with "Inferred shape and existing shape differ".
    del model.graph.value_info[:]
    # Per-channel weight scales: on MiniLM + BANKING77 top-1 agreement 97% vs 90% per-tensor, same 23 MB.
    quantize_dynamic(model, str(target), weight_type=QuantType.QInt8, per_channel=True)


def quantize_int4(source: Path, target: Path, block_size: int = 32) -> None:
    """ORT 4-bit weight-only MatMulNBits with HQQ (half-quadratic: per block of `block_size` inputs, a scale and a
    float zero point fitted to the weights); the projection to the logits (a decoder's lm_head) in 8 bits.
    Embeddings and activations stay fp32.

    Why HQQ: on SmolLM2-135M (weights from an asymmetric Q4_1 GGUF), over every position of two E2E examples,
    round-to-nearest 4-bit blocks picked the fp32 graph's next token 59% (symmetric) / 61% (asymmetric) of the
    time, HQQ 98.5%: a float zero point can sit on the weights' own grid, an integer one cannot."""
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, MatMulNBitsQuantizer

    # it logs two INFO lines per weight matrix (hundreds for a decoder) to the console
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    model = onnx.load(str(source))
    outputs = {item.name for item in model.graph.output}
    head = [node.name for node in model.graph.node if node.op_type == "MatMul" and set(node.output) & outputs]
    body = MatMulNBitsQuantizer(model, nodes_to_exclude=head,
                                algo_config=HQQWeightOnlyQuantConfig(block_size=block_size, bits=4))
    body.process()
    model = integer_zero_points(body.model.model)
    if head:
        # accuracy_level 4 (int8 activations): the only fast 8-bit kernel at one token (SmolLM2's 576x49152 head:
        # 0.9 ms vs 118 ms per step, measured in one process)
        logits = MatMulNBitsQuantizer(model, bits=8, block_size=block_size, is_symmetric=False, nodes_to_include=head,
                                      accuracy_level=4)
        logits.process()
        model = logits.model.model
    onnx.save_model(model, str(target), save_as_external_data=model.ByteSize() > 2**31 - 2**20)


def integer_zero_points(model):
    """The same products with 4-bit integer zero points: ONNX Runtime's fast MatMulNBits kernels take only those
    (with float ones a one-token decode step dequantizes every weight: 14x slower per MatMul here).

    A float zero point z = n + f (n the integer in [0, 15] nearest to it) gives
    x @ ((q - z) * s) = x @ ((q - n) * s) - (x summed per block) @ (f * s),
    so each MatMulNBits keeps HQQ's exact dequantization with n as its zero point, and a small correction (two
    MatMuls through K / block_size values) is subtracted from its output."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {item.name: item for item in graph.initializer}
    nodes = []
    for node in graph.node:
        zero_name = node.input[3] if node.op_type == "MatMulNBits" and len(node.input) > 3 else ""
        zero = initializers.get(zero_name)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if zero is None or zero.data_type != onnx.TensorProto.FLOAT or attrs.get("bits") != 4 \
                or attrs["K"] % attrs["block_size"]:
            nodes.append(node)
            continue
        k, n, block = attrs["K"], attrs["N"], attrs["block_size"]
        blocks = k // block
        zero_float = numpy_helper.to_array(zero).reshape(n, blocks)
        scales = numpy_helper.to_array(initializers[node.input[2]]).reshape(n, blocks)
        zero_int = np.clip(np.rint(zero_float), 0, 15).astype(np.uint8)
        packed = np.zeros((n, (blocks + 1) // 2), dtype=np.uint8)  # two per byte, low nibble first, per column
        packed[:, : (blocks + 1) // 2] = zero_int[:, 0::2]
        packed[:, : blocks // 2] |= zero_int[:, 1::2] << 4
        sums = f"block_sums_{k}x{block}"  # (K, blocks) of 0/1, shared by every MatMul of that shape
        if sums not in initializers:
            ones = np.kron(np.eye(blocks, dtype=np.float32), np.ones((block, 1), dtype=np.float32))
            initializers[sums] = numpy_helper.from_array(ones, sums)
            graph.initializer.append(initializers[sums])
        correction = ((zero_float - zero_int) * scales).T.astype(np.float32)  # (blocks, N)
        prefix, output = node.name or node.output[0], node.output[0]
        new = [numpy_helper.from_array(packed.reshape(-1), f"{prefix}_zero_points_u4"),
               numpy_helper.from_array(correction, f"{prefix}_zero_correction")]
        graph.initializer.extend(new)
        inputs = list(node.input)
        inputs[3] = new[0].name
        quantized = helper.make_node("MatMulNBits", inputs, [f"{output}_uncorrected"], name=node.name,
                                     domain=node.domain, **attrs)
        nodes += [quantized,
                  helper.make_node("MatMul", [node.input[0], sums], [f"{output}_block_sums"]),
                  helper.make_node("MatMul", [f"{output}_block_sums", new[1].name], [f"{output}_correction"]),
                  helper.make_node("Sub", [f"{output}_uncorrected", f"{output}_correction"], [output])]
        graph.initializer.remove(zero)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


QUANTIZERS = {"int8": quantize_int8, "int4": quantize_int4}


def write(model, folder: Path, precision: str, job) -> dict:
    """Write `model.onnx` at `precision` into `folder`; returns the manifest's format-specific fields."""
    if precision == "fp32":
        export_fp32(model, folder / "model.onnx", job.sample)
    else:
        float_path = job.workdir / "float.onnx"
        export_fp32(model, float_path, job.sample)
        QUANTIZERS[precision](float_path, folder / "model.onnx")
    return {"files": ["model.onnx"], "inputs": input_specs(), "outputs": output_specs(model)}


def input_specs() -> list[dict]:
    """The manifest's `inputs` of an ONNX-derived graph (ONNX, OpenVINO)."""
    return [{"name": name, "dtype": "int64", "shape": ["batch", "sequence"]} for name in INPUT_NAMES]


def output_specs(model) -> list[dict]:
    """The manifest's `outputs`: `logits` with the axes the model's task names."""
    from edgeft.tasks import get_task

    return [{"name": "logits", "shape": list(get_task(model.head_config.task).output_axes)}]
