"""One loader per bundle format: each imports only its own runtime and returns a `Backend`.

`Backend.run` takes the int arrays from `TextEncoder.pad` (names as in the manifest's `inputs`) and returns float32
logits; it is safe to call from many threads at once. How each backend gets there, fastest safe way first:
- ONNX Runtime: `InferenceSession.run` is thread-safe; one session serves every thread in parallel.
- OpenVINO: an infer request holds its own buffers and is not thread-safe; a pool hands each concurrent call its
  own request, at most the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS (what `AsyncInferQueue` uses).
- LiteRT: an interpreter owns its tensors and must not be shared; a pool hands each concurrent call its own
  interpreter (the model file is memory-mapped, so weights are shared), at most one per CPU.
Errors from a backend reading a corrupt file are raised as `BundleError` naming the file.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeft.errors import missing_extra

Run = Callable[[dict[str, np.ndarray]], np.ndarray]
# OpenVINO's CPU plugin keeps state per distinct input shape of a dynamic model (its kernels and buffers for that
# shape): single texts of every length from 3 to 64 tokens grew RSS by a step per new length (MiniLM: +24 MB over
# 5,000 BANKING77 texts, flat only once every length had been seen). Padding the sequence to a multiple of 8 caps
# the shapes at max_length / 8 and kept RSS flat to 1 MB (attention masks make the padding exact).
OPENVINO_SEQUENCE_MULTIPLE = 8


@dataclass
class Backend:
    run: Run
    """Encoded inputs -> logits; thread-safe."""
    versions: dict
    """Runtime package versions, for reports and self-check messages."""
    output_width: int | None
    """The static size of the first output's last axis (the label count of a classifier), None if dynamic."""
    sequence_multiple: int = 1
    """Inputs are padded to a sequence length that is a multiple of this (bounds a backend's per-shape state)."""


class Pool:
    """Hands each concurrent caller its own object, made on demand by `make`, at most `size` of them."""

    def __init__(self, make: Callable, size: int):
        self._make, self._size = make, max(1, size)
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()
        self._idle.put(self._grow())  # the first one now, so a broken model fails at load

    def _grow(self):
        with self._lock:
            self._made += 1
        return self._make()

    @contextmanager
    def take(self):
        try:
            item = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._made < self._size
            item = self._grow() if grow else self._idle.get()
        try:
            yield item
        finally:
            self._idle.put(item)


def load_onnx(folder: Path, manifest: dict, threads: int | None) -> Backend:
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

    width = session.get_outputs()[0].shape[-1] if session.get_outputs()[0].shape else None
    return Backend(run, {"onnxruntime": ort.__version__}, width if isinstance(width, int) else None)


def load_openvino(folder: Path, manifest: dict, threads: int | None) -> Backend:
    """OpenVINO on CPU, with the manifest's compile properties (fp32 bundles pin f32: this CPU defaults to bf16)."""
    try:
        import openvino as ov
    except ImportError:
        raise missing_extra("Running an OpenVINO bundle", "openvino") from None
    config = dict(manifest.get("runtime_config", {}))
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", config)
    requests = Pool(compiled.create_infer_request, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    # Inputs go by position: a converted model's input can carry several names (STACK.md).
    names = [spec["name"] for spec in manifest["inputs"]]
    dtypes = _dtypes(manifest)
    output = compiled.output(0)

    def run(encoded):
        feeds = [encoded[name].astype(dtypes[name], copy=False) for name in names]
        with requests.take() as request:
            result = request.infer(feeds)
            return np.array(result[output], copy=True)  # the request reuses its output buffer

    shape = output.get_partial_shape()
    width = shape[-1].get_length() if shape.rank.is_static and len(shape) and shape[-1].is_static else None
    return Backend(run, {"openvino": ov.get_version()}, width, OPENVINO_SEQUENCE_MULTIPLE)


def tflite_interpreter() -> tuple[type, dict]:
    """LiteRT's Interpreter class (ai-edge-litert, or the legacy tflite-runtime wheel) and its version."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, {"ai-edge-litert": _version("ai-edge-litert")}
    except ImportError:
        try:  # tflite-runtime 2.14 rejects newer op versions and may return zeros: the self-check catches it
            from tflite_runtime.interpreter import Interpreter

            return Interpreter, {"tflite-runtime": _version("tflite-runtime")}
        except ImportError:
            raise missing_extra("Running a TFLite bundle", "tflite-runtime") from None


def tflite_runners(Interpreter: type, folder: Path, threads: int | None, signatures: list[str]) -> dict:
    """An interpreter of the bundle's `model.tflite` as one runner per signature. Its C++ side writes an "INFO:
    Created TensorFlow Lite XNNPACK delegate" line to stderr on every load: that output is held back, and shown
    only if the load fails."""
    with _NATIVE_STDERR_LOCK, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            interpreter = Interpreter(model_path=str(folder / "model.tflite"), num_threads=threads)
            interpreter.allocate_tensors()  # applies the XNNPACK delegate now rather than at the first call
            runners = {name: interpreter.get_signature_runner(name) for name in signatures}
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return runners


_NATIVE_STDERR_LOCK = threading.Lock()  # file descriptor 2 is process-wide: one held load at a time


def load_tflite(folder: Path, manifest: dict, threads: int | None) -> Backend:
    """LiteRT (ai-edge-litert), or the legacy tflite-runtime wheel as a fallback; one runner per fixed-shape bucket.

    Rows are sent in chunks of the bucket's batch size; `encode` has already padded the rows and the sequence.
    """
    Interpreter, versions = tflite_interpreter()
    buckets = manifest["buckets"]
    signatures = [bucket["signature"] for bucket in buckets]

    def make_runners() -> dict:
        return tflite_runners(Interpreter, folder, threads, signatures)

    interpreters = Pool(make_runners, os.cpu_count() or 1)
    names = [spec["name"] for spec in manifest["inputs"]]

    def run(encoded):
        rows, length = encoded[names[0]].shape
        fitting = [b for b in buckets if b["seq"] == length and rows % b["batch"] == 0]
        if not fitting:
            shapes = ", ".join(f"{b['batch']}x{b['seq']}" for b in buckets)
            raise ValueError(f"no TFLite signature takes {rows}x{length} inputs (buckets: {shapes}); use encode()")
        bucket = max(fitting, key=lambda b: b["batch"])
        chunks = []
        with interpreters.take() as runners:
            runner = runners[bucket["signature"]]
            for start in range(0, rows, bucket["batch"]):
                feeds = {name: encoded[name][start : start + bucket["batch"]].astype(np.int32) for name in names}
                chunks.append(np.array(next(iter(runner(**feeds).values())), copy=True))
        return np.concatenate(chunks)

    with interpreters.take() as runners:
        details = next(iter(next(iter(runners.values())).get_output_details().values()))
    return Backend(run, versions, int(details["shape"][-1]) if len(details["shape"]) else None)


BACKENDS = {"onnx": load_onnx, "openvino": load_openvino, "tflite": load_tflite}


def _dtypes(manifest: dict) -> dict[str, str]:
    return {spec["name"]: spec["dtype"] for spec in manifest["inputs"]}


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
