"""Shared fixtures: tiny data and recipes for fast tests, and the location of ../shared for integration tests."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
BANKING77 = SHARED_DATA / "banking77"

# Three intents whose words do not overlap, so even a tiny random model can learn them in a few steps.
TINY_INTENTS = {
    "card_lost": "card lost stolen missing wallet blocked",
    "transfer": "transfer money send account payment wire",
    "fees": "fee charge cost extra price commission",
}


def write_tiny_csv(path: Path, rows_per_label: int, seed: int = 0, label_column: str = "category") -> Path:
    """A small three-intent CSV (`text,<label_column>`) with shuffled rows."""
    rng = random.Random(seed)
    rows = [
        (" ".join(rng.sample(words.split(), 3)) + f" please {i}", label)
        for label, words in TINY_INTENTS.items()
        for i in range(rows_per_label)
    ]
    rng.shuffle(rows)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", label_column])
        writer.writerows(rows)
    return path


@pytest.fixture
def tiny_recipe(tmp_path) -> dict:
    """A recipe mapping for tiny-bert on tiny data, fast enough for unit tests; tests adjust it and write it."""
    return {
        "name": "tiny",
        "model": {"name": "tiny-bert"},
        "data": {
            "train": str(write_tiny_csv(tmp_path / "train.csv", 40)),
            "test": str(write_tiny_csv(tmp_path / "test.csv", 10, seed=1)),
            "validation": 0.2,
            "label_column": "category",
            "max_length": 32,
        },
        "method": {"kind": "lora", "r": 4},
        "training": {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3},
        "output": str(tmp_path / "run"),
    }


def write_recipe(recipe: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def banking77() -> Path:
    """The BANKING77 folder in ../shared; integration tests skip without it (a user's fresh clone)."""
    if not (BANKING77 / "train.csv").exists():
        pytest.skip(f"needs ../shared/data/banking77 beside the repo (looked in {BANKING77})")
    return BANKING77


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tuned tiny-bert run folder (a few seconds), shared by the compress tests; tests copy it to change it."""
    from edgeft.recipe import validate_recipe
    from edgeft.tune import tune

    folder = tmp_path_factory.mktemp("tiny-run")
    recipe = {
        "name": "tiny", "model": {"name": "tiny-bert"},
        "data": {"train": str(write_tiny_csv(folder / "train.csv", 40)),
                 "test": str(write_tiny_csv(folder / "test.csv", 10, seed=1)),
                 "validation": 0.2, "label_column": "category", "max_length": 32},
        "method": {"kind": "lora", "r": 4}, "training": {"epochs": 3, "batch_size": 8, "learning_rate": 5e-3},
        "compress": {"prune": {"layers": [0, 1]}},
        "output": str(folder / "run"),
    }
    return tune(validate_recipe(recipe))
