"""The real MiniLM on a slice of BANKING77: the recipe path users run, small enough for CI."""

import json

import pandas as pd
import pytest

from edgeft.recipe import validate_recipe
from edgeft.tune import tune

pytestmark = pytest.mark.integration
LABELS = 8


@pytest.fixture
def banking77_slice(banking77, tmp_path):
    """20 train and 10 test rows for each of 8 intents, written to tmp (never into the repo)."""
    paths = {}
    for split, rows in (("train", 20), ("test", 10)):
        frame = pd.read_csv(banking77 / f"{split}.csv")
        keep = sorted(frame["category"].unique())[:LABELS]
        sample = frame[frame["category"].isin(keep)].groupby("category").head(rows)
        paths[split] = tmp_path / f"{split}.csv"
        sample.sample(frac=1, random_state=0).to_csv(paths[split], index=False)
    return paths


def test_lora_on_minilm_learns_banking77_intents(banking77_slice, tmp_path):
    recipe = validate_recipe({
        "name": "b77-slice",
        "model": {"name": "minilm"},
        "data": {"train": str(banking77_slice["train"]), "test": str(banking77_slice["test"]),
                 "validation": 0.2, "label_column": "category", "max_length": 64},
        "method": {"kind": "lora", "r": 8},
        "training": {"epochs": 4, "batch_size": 16},
        "output": str(tmp_path / "run"),
    })
    run = tune(recipe)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["rows"] == LABELS * 10
    assert metrics["test"]["accuracy"] > 0.6  # chance is 1/8
    assert metrics["merge"]["max_abs_diff"] < 1e-4
    head = json.loads((run / "merged" / "classifier.json").read_text())
    assert head["pooling"] == "mean"  # MiniLM's own sentence-transformers pooling
