"""PyTorch eager as a row of the bench protocol: `load(model_dir, threads)` gives what the timing loop times.

It has the Predictor's shape (`encode`, `run`, `manifest`, `runtime_versions`, `model_bytes`), so PyTorch runs in
the very loop the bundles run in (`python -m edgeft.runtime.bench MODEL_DIR --factory edgeft.bench.eager:load`):
same texts, same untimed tokenization, same time-based sample, one fresh process per round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class EagerClassifier:
    """A classifier folder in PyTorch eager, fp32 (or a `transform`ed copy, e.g. dynamically quantized)."""

    def __init__(self, model_dir: str | Path, threads: int | None = None, transform=None):
        import torch

        from edgeft.models import load_classifier, load_tokenizer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        model = load_classifier(model_dir).eval()
        self.model = transform(model) if transform else model
        self.tokenizer = load_tokenizer(model_dir)
        self.max_length = int(model.head_config.max_length)
        self.labels = list(model.head_config.labels)
        self.manifest = {"format": "pytorch", "precision": "fp32"}
        self.runtime_versions = {"torch": torch.__version__}
        self.model_bytes = sum(path.stat().st_size for path in Path(model_dir).glob("*.safetensors"))

    def encode(self, texts: list[str]) -> dict:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def run(self, encoded: dict) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(encoded["input_ids"], encoded["attention_mask"]).float().numpy()

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return np.concatenate([self.run(self.encode(texts[start:start + batch_size]))
                               for start in range(0, len(texts), batch_size)])


def load(model_dir: str, threads: int | None = None) -> EagerClassifier:
    """The protocol's factory for PyTorch eager fp32."""
    return EagerClassifier(model_dir, threads)
