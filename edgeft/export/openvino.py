"""OpenVINO IR export (converted from the ONNX graph) and the NNCF quantizers `compress` reuses."""

from __future__ import annotations

from pathlib import Path

from edgeft.errors import missing_extra
from edgeft.export import onnx as onnx_export

PRECISIONS = ("fp32", "fp16", "int8", "int8-weights", "int4")
# This CPU (AVX-512 BF16) runs OpenVINO in bf16 unless told otherwise: 2e-3 logit error instead of 3e-7.
FP32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def _ov():
    try:
        import openvino
    except ImportError:
        raise missing_extra("OpenVINO export", "openvino") from None
    return openvino


def _nncf():
    try:
        import nncf
    except ImportError:
        raise missing_extra("OpenVINO quantization", "compress-openvino") from None
    return nncf


def convert(onnx_path: Path):
    """An `openvino.Model` from an ONNX file; converting the ONNX graph keeps the input names clean."""
    return _ov().convert_model(str(onnx_path))


def quantize_int8(model, calibration: list[dict]):
    """NNCF post-training int8 (weights and activations), calibrated on a few hundred real inputs.

    `model_type=TRANSFORMER` keeps softmax/layer-norm paths in float; without it MiniLM loses accuracy (STACK.md).
    """
    nncf = _nncf()
    dataset = nncf.Dataset(calibration)
    return nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration))


def compress_weights(model, bits: int, group_size: int = 64):
    """NNCF weight-only compression: int8 per channel, or int4 symmetric in groups (all layers); activations float."""
    nncf = _nncf()
    if bits == 8:
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    # Layers whose width the group size does not divide get the largest power-of-two group that does.
    adjust = nncf.AdvancedCompressionParameters(group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
    return nncf.compress_weights(
        model,
        mode=nncf.CompressWeightsMode.INT4_SYM,
        group_size=group_size,
        ratio=1.0,
        advanced_parameters=adjust,
    )


def write(model, folder: Path, precision: str, job) -> dict:
    """Write `model.xml` + `model.bin` at `precision` into `folder`; returns the manifest's format fields."""
    ov = _ov()
    float_path = job.workdir / "float.onnx"
    onnx_export.export_fp32(model, float_path, job.sample)
    ov_model = convert(float_path)
    if precision == "int8":
        ov_model = quantize_int8(ov_model, job.calibration())
    elif precision == "int8-weights":
        ov_model = compress_weights(ov_model, bits=8)
    elif precision == "int4":
        ov_model = compress_weights(ov_model, bits=4)
    ov.save_model(ov_model, str(folder / "model.xml"), compress_to_fp16=precision == "fp16")
    return {
        "files": ["model.xml", "model.bin"],
        "inputs": onnx_export.input_specs(),
        "outputs": onnx_export.output_specs(model),
        "runtime_config": FP32_CONFIG if precision == "fp32" else {},
    }
