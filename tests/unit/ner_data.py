"""Tiny synthetic NER data (CoNLL files) that a random 2-layer BERT learns in a few dozen steps."""

from __future__ import annotations

import random
from pathlib import Path

ENTITIES = {
    "person": ["Alice Smith", "Bob", "Zuckerberg", "Carol Jones", "Dmitri"],
    "location": ["Paris", "New York", "Kathmandu", "Berlin"],
    "corporation": ["Google", "Acme Corp", "Nvidia"],
}
TEMPLATES = [
    "{person} lives in {location} .",
    "yesterday {person} flew to {location} !",
    "we met {person} at the {corporation} office",
    "{corporation} opened a shop in {location}",
    "nothing to see here , just words",
]


def sentences(count: int, seed: int) -> list[list[tuple[str, str]]]:
    """`count` sentences of (word, BIO tag) pairs."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        words = []
        for piece in rng.choice(TEMPLATES).split():
            kind = piece[1:-1] if piece.startswith("{") else None
            if kind is None:
                words.append((piece, "O"))
                continue
            name = rng.choice(ENTITIES[kind]).split()
            words += [(word, f"{'B' if i == 0 else 'I'}-{kind}") for i, word in enumerate(name)]
        result.append(words)
    return result


def write_conll(path: Path, count: int, seed: int) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in sentence) for sentence in sentences(count, seed))
                    + "\n")
    return path


def ner_recipe(folder: Path) -> dict:
    """A token-classification recipe for tiny-bert on the synthetic files (seconds to tune)."""
    return {
        "name": "tiny-ner",
        "model": {"name": "tiny-bert", "task": "token-classification"},
        "data": {
            "train": str(write_conll(folder / "train.conll", 120, seed=0)),
            "validation": str(write_conll(folder / "dev.conll", 20, seed=1)),
            "test": str(write_conll(folder / "test.conll", 30, seed=2)),
            "max_length": 32,
        },
        "method": {"kind": "full"},
        "training": {"epochs": 6, "batch_size": 16, "learning_rate": 3e-3, "head_learning_rate": 3e-3,
                     "early_stopping_patience": None, "group_by_length": True},
        "output": str(folder / "run"),
    }
