"""A tiny random classifier and bundles of it, shared by the export and runtime tests (seconds to build)."""

from __future__ import annotations

from pathlib import Path

LABELS = ["balance", "card_lost", "transfer"]
TEXTS = [
    "what is my balance",
    "I lost my card yesterday on the train",
    "send 20 euros to my sister",
    "how do I transfer money abroad?",
    "my card was stolen, please block it now",
    "balance",
    "Why is the exchange rate so bad for transfers to the UK from my euro account",
    "Où est ma carte ? ça fait deux semaines",
] * 4


def make_classifier(folder: Path, max_length: int = 32) -> Path:
    """Save a seeded tiny BERT classifier (MiniLM's vocabulary) into `folder`."""
    import torch

    from edgeft.models import HeadConfig, SequenceClassifier, load_encoder, load_tokenizer

    torch.manual_seed(0)
    model = SequenceClassifier(load_encoder("tiny-bert"), HeadConfig(labels=LABELS, max_length=max_length))
    model.save(folder, load_tokenizer("tiny-bert"))
    return folder


def make_bundle(folder: Path, format: str = "onnx", precision: str = "fp32") -> Path:
    """A classifier folder under `folder` exported to a verified bundle `folder/<format>-<precision>`."""
    from edgeft.export import export

    model_dir = folder / "classifier"
    if not model_dir.exists():
        make_classifier(model_dir)
    return export(model_dir, format, precision, folder / f"{format}-{precision}", texts=TEXTS, progress=False)
