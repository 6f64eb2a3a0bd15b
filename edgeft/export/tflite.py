"""TFLite export with litert-torch (no TensorFlow), fixed-shape signatures, and the LiteRT int8 quantizer.

Dynamic shapes do not convert, so one .tflite holds several fixed-shape signatures sharing the weights
(batch 1 x a few sequence lengths, plus one batched signature); the runtime pads to the smallest that fits.
"""

from __future__ import annotations

from pathlib import Path

from edgeft.errors import missing_extra

PRECISIONS = ("fp32", "int8", "int8-emb4")
EMBEDDING_BITS = {"int8": 8, "int8-emb4": 4}
INPUT_NAMES = ("input_ids", "attention_mask")
SEQUENCE_BUCKETS = (16, 32, 64, 128)
BATCH = 8
BATCH_SEQUENCE = 64


def buckets(max_length: int) -> list[dict]:
    """Batch-1 buckets up to max_length (always including it) and one batch-8 bucket."""
    lengths = sorted({length for length in SEQUENCE_BUCKETS if length < max_length} | {max_length})
    shapes = [(1, length) for length in lengths] + [(BATCH, min(BATCH_SEQUENCE, max_length))]
    return [{"signature": f"b{batch}_s{seq}", "batch": batch, "seq": seq} for batch, seq in shapes]


def export_fp32(model, path: Path, shapes: list[dict]) -> None:
    """Convert the classifier with one signature per bucket; inputs are int32 (LiteRT has no int64 by default)."""
    import torch

    try:
        import litert_torch
    except ImportError:
        raise missing_extra("TFLite export", "tflite") from None
    converter = litert_torch.Converter()
    for shape in shapes:
        sample = {name: torch.ones(shape["batch"], shape["seq"], dtype=torch.int32) for name in INPUT_NAMES}
        converter.signature(shape["signature"], model, sample_kwargs=sample)
    converter.convert().export(str(path))


def quantize_int8(source: Path, target: Path, embedding_bits: int = 8) -> None:
    """LiteRT dynamic-range int8 (ai-edge-quantizer `dynamic_wi8_afp32`: int8 weights per channel, float activations).

    `embedding_bits=4` stores the word-embedding table (EMBEDDING_LOOKUP) at 4 bits per value, one scale per row: the
    table is most of a small encoder's file (MiniLM: 11.7 of 19 MB at int8) and is only looked up, never multiplied.
    """
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe
    except ImportError:
        raise missing_extra("TFLite quantization", "tflite") from None
    job = quantizer.Quantizer(str(source))
    job.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    if embedding_bits != 8:
        job.add_dynamic_config(".*", "EMBEDDING_LOOKUP", embedding_bits, qtyping.QuantGranularity.CHANNELWISE)
    job.quantize(enable_progress_report=False).export_model(str(target), overwrite=True)


def write(model, folder: Path, precision: str, job) -> dict:
    """Write `model.tflite` at `precision` into `folder`; returns the manifest's format fields."""
    shapes = buckets(job.max_length)
    if precision == "fp32":
        export_fp32(model, folder / "model.tflite", shapes)
    else:
        float_path = job.workdir / "float.tflite"
        export_fp32(model, float_path, shapes)
        quantize_int8(float_path, folder / "model.tflite", EMBEDDING_BITS[precision])
    inputs = [{"name": name, "dtype": "int32", "shape": ["bucket_batch", "bucket_seq"]} for name in INPUT_NAMES]
    return {"files": ["model.tflite"], "inputs": inputs, "buckets": shapes, "outputs": [{"name": "output_0"}]}
