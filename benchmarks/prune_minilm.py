"""What structured pruning, distillation and vocabulary pruning cost and buy on a tuned MiniLM (PyTorch, CPU).

For the tuned model and each pruning setting: parameters, PyTorch fp32 eager latency (batch 1, a real test text
padded to max_length, median of N runs at T threads) and test accuracy / macro-F1, then the same after a short
distillation from the tuned model; plus the vocabulary-pruned tuned model. Ratios are against the tuned model
measured in the same run.

Usage (from the repo root):
    python -m benchmarks.prune_minilm runs/banking77-minilm-lora \
        --setting heads=0.3,ffn=0.4 --distill heads=0.5,ffn=0.6,layers=2 --distill-epochs 1 \
        --output benchmarks/results/prune_minilm.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from edgeft.compress.distill import DistillConfig, distill
from edgeft.compress.prune import PruneConfig, prune
from edgeft.compress.vocab import VocabConfig, prune_vocab
from edgeft.data import load_splits
from edgeft.metrics import classification_metrics
from edgeft.models import count_parameters, load_classifier, load_tokenizer
from edgeft.recipe import validate_recipe
from edgeft.training import model_logits, tokenize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a tune run folder (merged/ and recipe.lock.yaml inside)")
    parser.add_argument("--setting", action="append", default=[], help="prune settings, e.g. heads=0.3,ffn=0.4")
    parser.add_argument("--distill", action="append", default=[], help="a prune setting to prune and distill")
    parser.add_argument("--distill-epochs", type=float, default=1.0)
    parser.add_argument("--distill-steps", type=int, default=None, help="cap on distillation steps per setting")
    parser.add_argument("--hidden-weight", type=float, default=0.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="thread counts to time at")
    parser.add_argument(
        "--work-threads", type=int, default=1,
        help="threads for evaluation and training (1 avoids OpenMP spin-waits on a shared, busy machine)",
    )
    parser.add_argument("--runs", type=int, default=50, help="timed runs per latency measurement")
    parser.add_argument("--test-rows", type=int, default=None, help="evaluate on the first N test rows only")
    parser.add_argument("--save", type=Path, default=None, help="save each compressed model under this folder")
    parser.add_argument("--output", type=Path, default=None, help="JSON results file")
    args = parser.parse_args()
    torch.set_num_threads(args.work_threads)

    teacher = load_classifier(args.run / "merged")
    tokenizer = load_tokenizer(args.run / "merged")
    recipe = validate_recipe(yaml.safe_load((args.run / "recipe.lock.yaml").read_text())["recipe"])
    splits = load_splits(recipe.data, recipe.training.seed)
    if args.test_rows:
        splits.test = splits.test.select(range(min(args.test_rows, len(splits.test))))
    max_length = teacher.head_config.max_length
    validation = tokenize(splits.validation, tokenizer, max_length)

    def evaluate(name: str, model, model_tokenizer, seconds: float | None = None) -> dict:
        test = tokenize(splits.test, model_tokenizer, max_length)
        predicted = model_logits(model, test, model_tokenizer).argmax(-1)
        metrics = classification_metrics(test["label"], predicted, splits.labels)
        row = {
            "name": name,
            "params": count_parameters(model)["total"],
            "accuracy": round(metrics["accuracy"], 4),
            "macro_f1": round(metrics["macro_f1"], 4),
            "seconds": seconds,
            "structure": copy.deepcopy(model.head_config.extra),
        }
        print(json.dumps({k: v for k, v in row.items() if k != "structure"}), flush=True)
        models[name] = (model, model_tokenizer)
        if args.save:
            model.save(args.save / name, model_tokenizer)
        return row

    models: dict[str, tuple] = {}
    rows = [evaluate("tuned", teacher, tokenizer)]
    for setting in dict.fromkeys(args.setting + args.distill):
        config = PruneConfig(**{k: yaml.safe_load(v) for k, v in (item.split("=") for item in setting.split(","))})
        started = time.perf_counter()
        student = prune(teacher, config, validation, tokenizer)
        rows.append(evaluate(f"pruned[{setting}]", student, tokenizer, round(time.perf_counter() - started, 1)))
        if setting not in args.distill:
            continue
        distill_config = DistillConfig(
            epochs=args.distill_epochs, max_steps=args.distill_steps, hidden_weight=args.hidden_weight
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            student = distill(copy.deepcopy(student), teacher, distill_config, splits, tokenizer, Path(folder))
        name = f"pruned[{setting}]+distilled"
        rows.append(evaluate(name, student, tokenizer, round(time.perf_counter() - started, 1)))
        rows[-1]["distill"] = distill_config.model_dump()
    small, small_tokenizer = prune_vocab(teacher, tokenizer, VocabConfig(), splits.train["text"])
    rows.append(evaluate("vocab-pruned", small, small_tokenizer))

    # Interleaved timing: every model sees the same share of whatever else the machine is doing.
    for threads in args.threads:
        torch.set_num_threads(threads)
        timings = latencies(models, splits.test[0]["text"], max_length, args.runs)
        base = statistics.median(timings["tuned"])
        for row in rows:
            times = timings[row["name"]]
            row.setdefault("latency_ms", {})[threads] = {
                "p50": round(statistics.median(times), 3),
                "min": round(min(times), 3),
                "speedup_p50": round(base / statistics.median(times), 2),
            }
    for row in rows:
        row["params_ratio"] = round(row["params"] / rows[0]["params"], 3)
    columns = " | ".join(f"p50 ms {n}t | min ms {n}t | speed-up {n}t" for n in args.threads)
    print(f"\n| model | params (M) | {columns} | test acc | macro-F1 |")
    print("| --- " * (4 + 3 * len(args.threads)) + "|")
    for row in rows:
        cells = " | ".join(
            f"{t['p50']:.2f} | {t['min']:.2f} | {t['speedup_p50']:.2f}x" for t in row["latency_ms"].values()
        )
        scores = f"{row['accuracy']:.4f} | {row['macro_f1']:.4f}"
        print(f"| {row['name']} | {row['params'] / 1e6:.2f} | {cells} | {scores} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        setup = {
            "threads": args.threads, "batch": 1, "seq": max_length, "runs": args.runs, "test_rows": len(splits.test)
        }
        args.output.write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))


@torch.inference_mode()
def latencies(models: dict[str, tuple], text: str, max_length: int, runs: int) -> dict[str, list[float]]:
    """Milliseconds per call for each model on one real input padded to `max_length`, interleaved, after warm-up."""
    inputs = {
        name: tokenizer([text], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        for name, (_, tokenizer) in models.items()
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for run in range(runs + 5):
        for name, (model, _) in models.items():
            started = time.perf_counter()
            model.eval()(**inputs[name])
            if run >= 5:
                times[name].append((time.perf_counter() - started) * 1000)
    return times


if __name__ == "__main__":
    main()
