"""BANKING77 test accuracy of MiniLM after head-only, LoRA and full fine-tuning.

Usage:
    python -m benchmarks.tune_banking77 RUN_DIR [RUN_DIR ...]

Each RUN_DIR is a finished `edgeft tune` run of recipes/banking77-minilm-lora.yaml (with `--set method.kind=...`
overrides for the baselines); its command is rebuilt from recipe.lock.yaml. Writes
`benchmarks/results/tune_banking77.json` and prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parent / "results"


def row(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    lock = yaml.safe_load((run / "recipe.lock.yaml").read_text())
    recipe = lock["recipe"]
    return {
        "run": run.name, "method": metrics["method"], "learning_rate": recipe["training"]["learning_rate"],
        "head_learning_rate": recipe["training"]["head_learning_rate"], "epochs": metrics["train"]["epochs"],
        "test_accuracy": metrics["test"]["accuracy"], "test_macro_f1": metrics["test"]["macro_f1"],
        "validation_accuracy": metrics["validation"]["accuracy"], "trainable_params": metrics["params"]["trainable"],
        "total_params": metrics["params"]["total"], "train_seconds": metrics["train"]["seconds"],
        "samples_per_second": metrics["train"]["samples_per_second"], "device": metrics["train"]["device"],
        "merge_max_abs_diff": metrics["merge"].get("max_abs_diff"), "packages": lock["packages"],
    }


def main(runs: list[str]) -> int:
    rows = [row(Path(run)) for run in runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tune_banking77.json").write_text(json.dumps(rows, indent=2))
    print("| method | lr (head lr) | epochs | test accuracy | macro-F1 | trainable params | train time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['method']} | {r['learning_rate']:g} ({r['head_learning_rate'] or r['learning_rate']:g}) | {r['epochs']:g} | "
              f"{r['test_accuracy']:.2%} | {r['test_macro_f1']:.4f} | {r['trainable_params']:,} | "
              f"{r['train_seconds'] / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
