"""Scoring through the run's task (`edgeft.tasks`): a PyTorch model folder on a split (the quick score of an
unexported student, and the tuned model's reference), and a bundle on examples, run in its own runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BATCH = 32


def model_metrics(task, model_dir: Path, split, labels: list[str]) -> dict:
    """The task's metrics of a PyTorch model folder on a raw split (a generating task scores by generating)."""
    if task.generates:
        return task.model_metrics(model_dir, split)
    import torch

    from edgeft.models import load_classifier, load_tokenizer

    model, tokenizer = load_classifier(model_dir), load_tokenizer(model_dir)
    tokenized = task.tokenize(split, tokenizer, model.head_config.max_length)
    inputs = tokenized.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids")
                                       if c in tokenized.column_names])
    collate = task.collator(tokenizer)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(inputs), BATCH):
            batch = collate([inputs[i] for i in range(start, min(start + BATCH, len(inputs)))])
            chunks.append(model(**batch).float().numpy())
    if chunks[0].ndim == 3:  # per-token logits: pad every batch to the longest sequence
        longest = max(chunk.shape[1] for chunk in chunks)
        chunks = [np.pad(chunk, ((0, 0), (0, longest - chunk.shape[1]), (0, 0))) for chunk in chunks]
    label_ids = np.array(tokenized["label"]) if "label" in tokenized.column_names else None
    return task.split_metrics(np.concatenate(chunks), label_ids, tokenized, labels)


def bundle_metrics(bundle: Path, examples: list, threads: int | None = None) -> dict:
    """The task's metrics of a bundle on its examples, run in its own runtime."""
    from edgeft.export import evaluate

    return evaluate(bundle, examples, threads=threads)
