"""The tools a user would pick instead of edgeft, each built the way its documentation shows, and run in the bench
protocol's loop (`--factory benchmarks.peers:<name>`), so every row of deploy_vs_peers is timed by the same code.

Each peer is a `build_<name>(model_dir, out, threads)` that writes its artifact into `out`, and a loader
`<name>(out, threads)` returning an object with the Predictor's `encode`/`run`/`labels`/`manifest`/`runtime_versions`/
`model_bytes`. The Optimum and optimum-intel rows export the encoder as a `feature-extraction` model (their tools do
not know edgeft's classifier class); the classifier's own pooling, L2 normalisation and linear head (a 384 x 77
matrix product, microseconds) then run in numpy inside the timed call.

`python -m benchmarks.peers predict --factory F TARGET TEXTS.json [--threads N]` prints the batch-1 predictions of
one row (its accuracy is measured in its own runtime, on the signature that is timed).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

MAX_LENGTH_FALLBACK = 64


class Head:
    """The classifier head of an edgeft classifier folder, in numpy: mean pooling, L2 norm x scale, linear."""

    def __init__(self, model_dir: Path):
        from safetensors.numpy import load_file

        config = json.loads((model_dir / "classifier.json").read_text())
        weights = load_file(str(model_dir / "classifier.safetensors"))
        self.labels, self.max_length = config["labels"], int(config.get("max_length", MAX_LENGTH_FALLBACK))
        self.pooling, self.normalize, self.scale = config["pooling"], config["normalize"], float(config["scale"])
        self.weight, self.bias = weights["weight"].T.copy(), weights["bias"]

    def __call__(self, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = mask[..., None].astype(states.dtype)
            pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12) * self.scale
        return pooled @ self.weight + self.bias


class _Peer:
    """Shared shape: HF tokenizer (padded to the batch's longest, or to `fixed_length`), then `_forward`."""

    fixed_length: int | None = None
    dtype = np.int64

    def __init__(self, out: Path, precision: str, versions: dict, model_files: list[Path]):
        from tokenizers import Tokenizer

        self.head = Head(out)
        self.labels = self.head.labels
        self.tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.head.max_length)
        self.tokenizer.no_padding()  # a saved tokenizer.json may pad to a fixed length; encode pads itself
        self.manifest = {"format": type(self).__name__, "precision": precision}
        self.runtime_versions = versions
        self.model_bytes = sum(path.stat().st_size for path in model_files)

    def encode(self, texts: list[str]) -> dict:
        encodings = self.tokenizer.encode_batch(list(texts))
        width = self.fixed_length or max(len(item.ids) for item in encodings)
        ids = np.zeros((len(texts), width), self.dtype)
        mask = np.zeros((len(texts), width), self.dtype)
        for row, item in enumerate(encodings):
            ids[row, :len(item.ids)], mask[row, :len(item.ids)] = item.ids, 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


# --- PyTorch dynamic int8 (torch.ao) ------------------------------------------------------------------------------

def pytorch_dynamic_int8(model_dir: str, threads: int | None = None):
    """PyTorch eager with `torch.ao.quantization.quantize_dynamic` on every Linear (int8 weights)."""
    import torch

    from edgeft.bench.eager import EagerClassifier

    def quantize(model):
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

    eager = EagerClassifier(model_dir, threads, transform=quantize)
    eager.manifest = {"format": "pytorch", "precision": "dynamic-int8"}
    buffer = io.BytesIO()
    torch.save(eager.model.state_dict(), buffer)  # written, never loaded: the size of the quantized weights
    eager.model_bytes = buffer.tell()
    return eager


# --- Optimum (optimum-onnx): export + ORTOptimizer + ORTQuantizer with this CPU's preset ----------------------------

def quantization_preset() -> str:
    """optimum's AutoQuantizationConfig preset for this CPU (its documented choices: arm64, avx2, avx512,
    avx512_vnni)."""
    import platform

    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def build_optimum_ort(model_dir: Path, out: Path, threads: int | None = None) -> dict:
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    exported, optimized = out / "exported", out / "optimized"
    main_export(str(model_dir), output=exported, task="feature-extraction", do_validation=False)
    ORTOptimizer.from_pretrained(exported).optimize(save_dir=optimized,
                                                    optimization_config=AutoOptimizationConfig.O2())
    # O2's fused ops (Attention, SkipLayerNormalization) defeat ONNX shape inference, and the quantizer then stops
    # ("Unable to find data type"); ONNX Runtime's own pre-processing, symbolic shape inference, fills the types.
    _infer_shapes(optimized / "model_optimized.onnx")
    preset = quantization_preset()
    config = getattr(AutoQuantizationConfig, preset)(is_static=False)
    quantizer = ORTQuantizer.from_pretrained(optimized, file_name="model_optimized.onnx")
    quantizer.quantize(save_dir=out, quantization_config=config)
    _copy_head(model_dir, out)
    return {"recipe": f"optimum main_export (feature-extraction) -> ORTOptimizer O2 (fused attention) -> symbolic "
                      "shape inference -> ORTQuantizer "
                      f"AutoQuantizationConfig.{preset}(is_static=False)"}


def _infer_shapes(path: Path) -> None:
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(path)), auto_merge=True), str(path))


class OptimumOrt(_Peer):
    def __init__(self, out: Path, threads: int | None):
        import onnxruntime as ort

        model = next(out.glob("*quantized.onnx"))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.names = [item.name for item in self.session.get_inputs()]
        super().__init__(out, "dynamic-int8", {"onnxruntime": ort.__version__}, [model])

    def run(self, encoded: dict) -> np.ndarray:
        states = self.session.run(None, {name: encoded[name] for name in self.names})[0]
        return self.head(states, encoded["attention_mask"])


def optimum_ort(out: str, threads: int | None = None) -> OptimumOrt:
    return OptimumOrt(Path(out), threads)


# --- optimum-intel + NNCF: OpenVINO IR, int8 post-training quantization -------------------------------------------

def build_optimum_openvino(model_dir: Path, out: Path, threads: int | None = None,
                           calibration: list[str] | None = None) -> dict:
    import nncf
    from optimum.intel import OVConfig, OVModelForFeatureExtraction, OVQuantizationConfig, OVQuantizer
    from transformers import AutoTokenizer

    model = OVModelForFeatureExtraction.from_pretrained(str(model_dir), export=True, compile=False)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    names = [item.get_any_name() for item in model.model.inputs]
    items = [{name: value for name, value in tokenizer(text, return_tensors="np").items() if name in names}
             for text in calibration or ["a sample sentence"]]
    config = OVConfig(quantization_config=OVQuantizationConfig(bits=8, num_samples=len(items)))
    OVQuantizer.from_pretrained(model).quantize(calibration_dataset=nncf.Dataset(items), ov_config=config,
                                                save_directory=out)
    _copy_head(model_dir, out)
    return {"recipe": "optimum-intel OVModelForFeatureExtraction(export=True) -> OVQuantizer.quantize with "
                      f"OVQuantizationConfig(bits=8) (NNCF, model_type=transformer), {len(items)} training texts"}


class OptimumOpenvino(_Peer):
    def __init__(self, out: Path, threads: int | None):
        import openvino as ov

        xml = out / "openvino_model.xml"
        config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        self.compiled = ov.Core().compile_model(str(xml), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = [item.get_any_name() for item in self.compiled.inputs]
        super().__init__(out, "int8", {"openvino": ov.get_version()}, [xml, out / "openvino_model.bin"])

    def run(self, encoded: dict) -> np.ndarray:
        result = self.request.infer({name: encoded[name] for name in self.names})
        return self.head(np.asarray(result[self.compiled.output(0)]), encoded["attention_mask"])


def optimum_openvino(out: str, threads: int | None = None) -> OptimumOpenvino:
    return OptimumOpenvino(Path(out), threads)


# --- litert-torch + ai-edge-quantizer: one fixed shape at the model's max length ---------------------------------

def build_litert(model_dir: Path, out: Path, threads: int | None = None, batches: tuple[int, ...] = (1, 8)) -> dict:
    """The documented path: convert the PyTorch module at a fixed input shape (max length; one signature per batch
    size), then dynamic-range int8 with ai-edge-quantizer. edgeft's TFLite export uses the same converter and
    quantizer (reused here), with several sequence-length buckets instead of one."""
    from edgeft.export.tflite import export_fp32, quantize_int8
    from edgeft.models import load_classifier

    model = load_classifier(model_dir)
    length = int(model.head_config.max_length)
    shapes = [{"signature": f"b{batch}", "batch": batch, "seq": length} for batch in batches]
    export_fp32(model, out / "float.tflite", shapes)
    quantize_int8(out / "float.tflite", out / "model.tflite")
    (out / "float.tflite").unlink()
    _copy_head(model_dir, out)
    return {"recipe": f"litert_torch.Converter, fixed shapes {[(s['batch'], s['seq']) for s in shapes]} -> "
                      "ai-edge-quantizer dynamic_wi8_afp32", "padded_length": length}


class LitertDynamic(_Peer):
    dtype = np.int32

    def __init__(self, out: Path, threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        from edgeft.runtime.backends import _version

        interpreter = Interpreter(model_path=str(out / "model.tflite"), num_threads=threads)
        self.runners = {int(name[1:]): interpreter.get_signature_runner(name)
                        for name in interpreter.get_signature_list()}
        super().__init__(out, "dynamic-int8", {"ai-edge-litert": _version("ai-edge-litert")}, [out / "model.tflite"])
        self.fixed_length = self.head.max_length

    def run(self, encoded: dict) -> np.ndarray:
        rows = encoded["input_ids"].shape[0]
        runner = self.runners[rows] if rows in self.runners else self.runners[1]
        step = rows if rows in self.runners else 1
        chunks = [next(iter(runner(input_ids=encoded["input_ids"][start:start + step],
                                   attention_mask=encoded["attention_mask"][start:start + step]).values()))
                  for start in range(0, rows, step)]
        return np.concatenate(chunks)


def litert_dynamic_int8(out: str, threads: int | None = None) -> LitertDynamic:
    return LitertDynamic(Path(out), threads)


def _copy_head(model_dir: Path, out: Path) -> None:
    import shutil

    for name in ("classifier.json", "classifier.safetensors", "tokenizer.json"):
        shutil.copy2(model_dir / name, out / name)


# --- batch-1 predictions of one row, in a fresh process -----------------------------------------------------------

def predict(factory: str | None, target: str, texts: list[str], threads: int | None) -> list[str]:
    """Top-1 label per text, one text per call (the batch-1 signature that is timed)."""
    import importlib

    if factory:
        module, _, function = factory.partition(":")
        model = getattr(importlib.import_module(module), function)(target, threads)
    else:
        from edgeft.runtime import load

        model = load(target, threads=threads)
    labels = list(model.labels)
    return [labels[int(np.asarray(model.run(model.encode([text])))[0].argmax())] for text in texts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("command", choices=["predict"])
    parser.add_argument("target")
    parser.add_argument("texts", type=Path)
    parser.add_argument("--factory", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    texts = json.loads(args.texts.read_text())
    print(json.dumps({"predictions": predict(args.factory, args.target, texts, args.threads)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
