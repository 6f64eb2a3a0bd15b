"""One loader per bundle format: each imports only its own runtime and returns a raw `run(encoded) -> logits`.

Every loader returns `(run, versions)`; `run` takes the int arrays from `TextEncoder.pad` (names as in the manifest's
`inputs`) and returns float32 logits of shape (rows, labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgeft.errors import missing_extra

Run = Callable[[dict[str, np.ndarray]], np.ndarray]


def load_onnx(folder: Path, manifest: dict, threads: int | None) -> tuple[Run, dict]:
    """ONNX Runtime, CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("Running an ONNX bundle", "onnx") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    dtypes = _dtypes(manifest)

    def run(encoded):
        return session.run(None, {name: encoded[name].astype(dtypes[name], copy=False) for name in names})[0]

    return run, {"onnxruntime": ort.__version__}


def load_openvino(folder: Path, manifest: dict, threads: int | None) -> tuple[Run, dict]:
    """OpenVINO on CPU, with the manifest's compile properties (fp32 bundles pin f32: this CPU defaults to bf16)."""
    try:
        import openvino as ov
    except ImportError:
        raise missing_extra("Running an OpenVINO bundle", "openvino") from None
    config = dict(manifest.get("runtime_config", {}))
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", config)
    request = compiled.create_infer_request()
    # Inputs go by position: a converted model's input can carry several names (STACK.md).
    names = [spec["name"] for spec in manifest["inputs"]]
    dtypes = _dtypes(manifest)

    def run(encoded):
        result = request.infer([encoded[name].astype(dtypes[name], copy=False) for name in names])
        return np.array(result[compiled.output(0)], copy=True)  # the request reuses its output buffer

    return run, {"openvino": ov.get_version()}


def load_tflite(folder: Path, manifest: dict, threads: int | None) -> tuple[Run, dict]:
    """LiteRT (ai-edge-litert), or the legacy tflite-runtime wheel as a fallback; one runner per fixed-shape bucket.

    Rows are sent in chunks of the bucket's batch size; `encode` has already padded the rows and the sequence.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        versions = {"ai-edge-litert": _version("ai-edge-litert")}
    except ImportError:
        try:  # tflite-runtime 2.14 rejects newer op versions and may return zeros: the self-check catches it
            from tflite_runtime.interpreter import Interpreter

            versions = {"tflite-runtime": _version("tflite-runtime")}
        except ImportError:
            raise missing_extra("Running a TFLite bundle", "tflite-runtime") from None
    interpreter = Interpreter(model_path=str(folder / "model.tflite"), num_threads=threads)
    buckets = manifest["buckets"]
    runners = {bucket["signature"]: interpreter.get_signature_runner(bucket["signature"]) for bucket in buckets}
    names = [spec["name"] for spec in manifest["inputs"]]

    def run(encoded):
        rows, length = encoded[names[0]].shape
        fitting = [b for b in buckets if b["seq"] == length and rows % b["batch"] == 0]
        if not fitting:
            shapes = ", ".join(f"{b['batch']}x{b['seq']}" for b in buckets)
            raise ValueError(f"no TFLite signature takes {rows}x{length} inputs (buckets: {shapes}); use encode()")
        bucket = max(fitting, key=lambda b: b["batch"])
        runner = runners[bucket["signature"]]
        chunks = []
        for start in range(0, rows, bucket["batch"]):
            feeds = {name: encoded[name][start : start + bucket["batch"]].astype(np.int32) for name in names}
            chunks.append(next(iter(runner(**feeds).values())))
        return np.concatenate(chunks)

    return run, versions


BACKENDS = {"onnx": load_onnx, "openvino": load_openvino, "tflite": load_tflite}


def _dtypes(manifest: dict) -> dict[str, str]:
    return {spec["name"]: spec["dtype"] for spec in manifest["inputs"]}


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
