"""Export a run to every format x precision and measure each bundle: size, parity with PyTorch, test accuracy.

Usage:
    python -m benchmarks.export_matrix runs/banking77-minilm-lora [--output exports-matrix] [--only onnx:int8 ...]

Writes `<output>/matrix.json` and prints a Markdown table. Accuracy runs every test example of the run's recipe
through the light runtime (`edgeft.export.evaluate`); agreement and max abs diff come from each bundle's
verification against PyTorch (256 test texts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgeft.export import PRECISIONS, evaluate, export
from edgeft.export.source import read_lock, resolve


def test_examples(run_dir: Path) -> list[tuple[str, str]]:
    from edgeft.data import load_splits

    source = resolve(run_dir)
    recipe = read_lock(source.recipe)
    splits = load_splits(recipe.data, seed=recipe.training.seed)
    return [(text, splits.labels[label]) for text, label in zip(splits.test["text"], splits.test["label"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--output", type=Path, default=Path("exports-matrix"))
    parser.add_argument("--only", nargs="*", help="format:precision pairs (default: all)")
    args = parser.parse_args()
    cases = [f"{fmt}:{precision}" for fmt, precisions in PRECISIONS.items() for precision in precisions]
    examples = test_examples(args.run_dir)
    rows = []
    for case in args.only or cases:
        fmt, precision = case.split(":")
        start = time.perf_counter()
        bundle = export(args.run_dir, fmt, precision, args.output / f"{fmt}-{precision}", min_agreement=0.0)
        export_s = time.perf_counter() - start
        manifest = json.loads((bundle / "manifest.json").read_text())
        model_bytes = sum(e["bytes"] for name, e in manifest["files"].items() if name.startswith("model."))
        scores = evaluate(bundle, examples)
        check = manifest["verification"]
        rows.append({
            "format": fmt,
            "precision": precision,
            "model_mb": round(model_bytes / 1e6, 1),
            "max_abs_diff": check["max_abs_diff"],
            "top1_agreement": check["top1_agreement"],
            "n_verify": check["n_inputs"],
            "test_accuracy": scores["accuracy"],
            "test_macro_f1": scores["macro_f1"],
            "n_test": scores["n"],
            "export_s": round(export_s, 1),
        })
        (args.output / "matrix.json").write_text(json.dumps(rows, indent=2))
        print(json.dumps(rows[-1]), flush=True)
    print("| format | precision | model MB | max abs diff | top-1 agreement | test accuracy | macro-F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['format']} | {r['precision']} | {r['model_mb']} | {r['max_abs_diff']:.2g} | "
              f"{r['top1_agreement']:.2%} | {r['test_accuracy']:.2%} | {r['test_macro_f1']:.4f} |")


if __name__ == "__main__":
    main()
