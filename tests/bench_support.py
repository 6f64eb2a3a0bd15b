"""Helpers for the bench tests: a tiny verified ONNX bundle made locally (tiny random BERT, exported by edgeft)."""

from __future__ import annotations

from pathlib import Path

import pytest

TEXTS = ["my card was lost", "how do i transfer money to a friend", "why was i charged an extra fee", "hello"]


def make_tiny_bundle(folder: Path) -> Path:
    """Export a seeded tiny random classifier to an fp32 ONNX bundle in `folder`; skip when export is absent."""
    export = pytest.importorskip("edgeft.export", reason="needs edgeft.export to build a bundle")
    import torch

    from edgeft.models import HeadConfig, SequenceClassifier, load_encoder, load_tokenizer

    torch.manual_seed(0)
    model = SequenceClassifier(load_encoder("tiny-bert"), HeadConfig(labels=["a", "b", "c"], max_length=32))
    model.eval().save(folder / "classifier", load_tokenizer("tiny-bert"))
    return export.export(folder / "classifier", "onnx", "fp32", folder / "bundle", texts=TEXTS, progress=False)
