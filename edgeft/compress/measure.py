"""Measuring one candidate: export it (verified), run it in its own runtime on the test split, bench it."""

from __future__ import annotations

import statistics
import time
import traceback
from pathlib import Path

import numpy as np

from edgeft.compress.chain import Variant
from edgeft.compress.config import CompressConfig
from edgeft.export import evaluate, export
from edgeft.models import load_classifier, load_tokenizer

VERIFY_ROWS = 256
CALIBRATION_ROWS = 300


def measure_candidate(variant: Variant, format: str, precision: str, bundle_dir: Path, profile, config: CompressConfig,
                      examples: list[tuple[str, str]], calibration: list[str], remote=None,
                      bench_texts: list[str] | None = None) -> dict:
    """One row of candidates.json; an export, evaluation or bench that fails is recorded in `error`."""
    from edgeft.bench import bench

    row = {"name": bundle_dir.name, "model": variant.name, "chain": variant.chain, "format": format,
           "precision": precision, "bundle": str(bundle_dir), "error": None}
    try:
        export(variant.folder, format, precision, output=bundle_dir, texts=examples[:VERIFY_ROWS],
               calibration_texts=calibration[:CALIBRATION_ROWS], min_agreement=config.min_agreement,
               progress=False)
        quality = evaluate(bundle_dir, examples, threads=profile.threads)
        spec = config.bench
        timing = bench(bundle_dir, profile, runs=spec.runs, warmup=spec.warmup, batch=spec.batch,
                       seq_len=spec.seq_len, remote=remote, texts=None if spec.seq_len else bench_texts)
    except Exception as error:  # one backend failing to convert an op must not stop the search
        row["error"] = f"{type(error).__name__}: {error}"
        row["traceback"] = traceback.format_exc(limit=4)
        return row
    row.update(
        accuracy=quality["accuracy"], macro_f1=quality["macro_f1"], eval_rows=quality["n"],
        p50_ms=timing["p50_ms"], p90_ms=timing["p90_ms"], peak_rss_mb=timing.get("peak_rss_mb"),
        model_bytes=timing.get("model_bytes"), source=timing["source"],
        runtime_versions=timing.get("runtime_versions", {}),
    )
    return row


def pytorch_reference(model_dir: Path, examples: list[tuple[str, str]], texts: list[str], threads: int,
                      runs: int, warmup: int) -> dict:
    """The PyTorch fp32 eager row: accuracy on the same examples, latency at batch 1 on the same texts."""
    import torch

    from edgeft.runtime.bench import machine_info

    from edgeft.export.verify import torch_logits
    from edgeft.metrics import classification_metrics

    model = load_classifier(model_dir)
    tokenizer = load_tokenizer(model_dir)
    labels = model.head_config.labels
    logits = torch_logits(model, tokenizer, [text for text, _ in examples], model.head_config.max_length)
    truth = np.array([labels.index(label) for _, label in examples])
    quality = classification_metrics(truth, logits.argmax(axis=1), labels)

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    encoded = [tokenizer([text], truncation=True, max_length=model.head_config.max_length, return_tensors="pt")
               for text in texts]
    timings = []
    try:
        with torch.inference_mode():
            for index in range(warmup + runs):
                batch = encoded[index % len(encoded)]
                started = time.perf_counter()
                model(batch["input_ids"], batch["attention_mask"])
                if index >= warmup:
                    timings.append((time.perf_counter() - started) * 1e3)
    finally:
        torch.set_num_threads(previous)
    weights = sum(path.stat().st_size for path in Path(model_dir).glob("*.safetensors"))
    return {
        "name": "pytorch-fp32-eager", "model": "tuned", "chain": [], "format": "pytorch", "precision": "fp32",
        "bundle": str(model_dir), "error": None, "reference": True,
        "accuracy": quality["accuracy"], "macro_f1": quality["macro_f1"], "eval_rows": quality["rows"],
        "p50_ms": statistics.median(timings), "p90_ms": float(np.percentile(timings, 90)),
        "peak_rss_mb": None, "model_bytes": weights,
        "source": f"measured:host ({machine_info()['cpu']})", "runtime_versions": {"torch": torch.__version__},
    }
