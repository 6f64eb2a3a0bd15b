"""What the search asks of the task: its metric (higher is better) and how to score a model and a bundle.

Sentence classification for now; these few calls are the seam where a task registry plugs in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

METRIC = "accuracy"


def score_model(model_dir: Path, examples: list[tuple[str, str]]) -> dict:
    """Metrics of a PyTorch model folder on (text, label) pairs: the quick score of an unexported student."""
    from edgeft.export.verify import torch_logits
    from edgeft.metrics import classification_metrics
    from edgeft.models import load_classifier, load_tokenizer

    model, tokenizer = load_classifier(model_dir), load_tokenizer(model_dir)
    labels = model.head_config.labels
    logits = torch_logits(model, tokenizer, [text for text, _ in examples], model.head_config.max_length)
    truth = np.array([labels.index(label) for _, label in examples])
    metrics = classification_metrics(truth, logits.argmax(axis=1), labels)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n": len(examples)}


def score_bundle(bundle: Path, examples: list[tuple[str, str]], threads: int | None = None) -> dict:
    """Metrics of a bundle run in its own runtime on (text, label) pairs."""
    from edgeft.export import evaluate

    return evaluate(bundle, examples, threads=threads)
