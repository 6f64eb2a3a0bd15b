"""WNUT17 test entity F1 of MiniLM after LoRA, head-only and full fine-tuning (token classification).

Usage:
    python -m benchmarks.tune_wnut17 RUN_DIR [RUN_DIR ...]

Each RUN_DIR is a finished `edgeft tune` run of recipes/wnut17-minilm-lora.yaml, possibly with `--set` overrides;
the command that produced it is rebuilt from its recipe.lock.yaml (every field that differs from the shipped recipe
becomes a `--set`). Writes `benchmarks/results/tune_wnut17.json` and prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from edgeft.recipe import load_recipe

RESULTS = Path(__file__).resolve().parent / "results"
RECIPE = "recipes/wnut17-minilm-lora.yaml"


def _flat(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def command(run: Path, recipe: dict) -> str:
    """`edgeft tune` with the `--set` overrides that turn the shipped recipe into the run's."""
    shipped = _flat(load_recipe(RECIPE).model_dump(mode="json"))
    used = _flat(recipe)
    sets = [f"--set {key}={used[key]}" for key in used
            if key not in ("output", "data.train", "data.validation", "data.test") and used[key] != shipped.get(key)]
    return " ".join(["edgeft tune", RECIPE, *sets, f"--output runs/{run.name}"])


def row(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    lock = yaml.safe_load((run / "recipe.lock.yaml").read_text())
    recipe, test, validation = lock["recipe"], metrics["test"], metrics["validation"]
    return {
        "run": run.name, "command": command(run, recipe), "method": metrics["method"],
        "learning_rate": recipe["training"]["learning_rate"],
        "head_learning_rate": recipe["training"]["head_learning_rate"], "epochs": metrics["train"]["epochs"],
        "best_checkpoint": metrics["train"]["best_checkpoint"],
        "test_f1": test["f1"], "test_precision": test["precision"], "test_recall": test["recall"],
        "test_token_accuracy": test["token_accuracy"], "test_per_type": test["per_type"],
        "validation_f1": validation["f1"], "trainable_params": metrics["params"]["trainable"],
        "total_params": metrics["params"]["total"], "train_seconds": metrics["train"]["seconds"],
        "samples_per_second": metrics["train"]["samples_per_second"], "device": metrics["train"]["device"],
        "merge_max_abs_diff": metrics["merge"].get("max_abs_diff"), "packages": lock["packages"],
    }


def main(runs: list[str]) -> int:
    rows = [row(Path(run)) for run in runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tune_wnut17.json").write_text(json.dumps(rows, indent=2))
    print("| method | lr (head lr) | epochs | test entity F1 | precision | recall | validation F1 | trainable params "
          "| train time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['method']} | {r['learning_rate']:g} ({r['head_learning_rate'] or r['learning_rate']:g}) | "
              f"{r['epochs']:g} | {r['test_f1']:.4f} | {r['test_precision']:.4f} | {r['test_recall']:.4f} | "
              f"{r['validation_f1']:.4f} | {r['trainable_params']:,} | {r['train_seconds'] / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
