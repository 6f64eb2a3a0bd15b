"""The Task contract: everything that differs between kinds of model, in one object per task.

`tune`, `export`, `compress`, `bench` and the runtime ask the task; none of them branches on its name. A task module
imports nothing heavy at import time (recipes are validated before the toolchain's extras are checked); torch,
transformers and datasets are imported inside the methods that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol


class Task(Protocol):
    """One kind of model, as every stage sees it. A new task is one module with one such object, added to `TASKS`.

    The toolchain half (this object: data, head, loss, metrics; may import torch) lives in `edgeft/tasks/`; the
    device half (`runtime`: what the exported graph's outputs mean, numpy and `tokenizers` only) lives in
    `edgeft/runtime/tasks/` under the same name. The toolchain half may use the device half, never the reverse.
    A task may classify (a label per text, a label per token) or generate; the stages only rely on what is here.

    Attributes:
        name: the recipe's `model.task`, the manifest's and `classifier.json`'s `task`.
        metric: key of the primary quality metric in a metrics dict (`evaluate_predictor`, `split_metrics`);
            higher is better. Checkpoints, early stopping and compression choose on it.
        metric_scale: the metric's full scale: 1.0 for a fraction (accuracy, F1), 100.0 for BLEU. A point is a
            hundredth of it; compression's `max_metric_drop` is a fraction of it (0.01 = one point).
        export_precisions: format -> precisions the exporter offers this task's models.
        generates: whether the model generates text: its quality is measured by generating (`model_metrics`) and
            its latency per decoded token, not per call.
        passes: names of the compression passes that apply (e.g. no vocabulary pruning where it is not exact).
        output_axes: axis names of the exported graph's one output, `logits` (e.g. ("batch", "labels")).
        runtime: the device half (`edgeft.runtime.tasks`): prediction rows, results, CLI records.
        merged_loader: the Python call that loads a run's `merged/` folder (shown in the model card).

    A generating task (causal-lm: the whole LM is tuned, quality is measured by generating) adds optional hooks the
    stages look for instead of the encoder + head path: `checkpoint_metric` ("loss": the Trainer keeps the lowest
    validation loss), `tune(recipe, folder, resume, progress) -> (metrics, log_history, model_source)` (`progress`:
    the stream for its progress lines), `summarize(recipe)` for `--dry-run`, and on its device half
    `open(folder, manifest, threads, self_check)`, which `edgeft.runtime.load` returns (a generator looping over the
    graph with a KV cache). Its `model_metrics(model_dir, split)` scores a PyTorch model folder by generating
    (compression's reference), and its bundles are timed per decoded token.
    """

    name: str
    metric: str
    metric_scale: float
    generates: bool
    merged_loader: str
    export_precisions: dict[str, tuple[str, ...]]
    passes: tuple[str, ...]
    output_axes: tuple[str, ...]
    runtime: Any

    def load_splits(self, spec, seed: int):
        """Read and check the recipe's data (`DataSpec`): `edgeft.data.Splits` with integer label ids.
        Bad input raises EdgeftError naming the file and the row or line."""

    def tokenize(self, split, tokenizer, max_length: int):
        """A split as model inputs (`input_ids`, `attention_mask`, ...) with the training targets in `labels`
        (or `label`), truncated, not padded."""

    def collator(self, tokenizer) -> Callable:
        """Pads a list of tokenized rows into a batch (targets padded as the loss ignores them)."""

    def build_model(self, encoder, head_config):
        """The encoder with this task's head (`edgeft.models.EncoderClassifier`): logits and the training loss."""

    def compute_metrics(self, labels: list[str]) -> Callable:
        """The Trainer's `compute_metrics` on validation (returns at least `metric`)."""

    def split_metrics(self, logits, label_ids, split, labels: list[str]) -> dict:
        """metrics.json's entry for one split, from PyTorch logits and label ids (as the Trainer returns them)
        and the split as `tokenize` made it."""

    def examples(self, split, labels: list[str]) -> list:
        """A split as the runtime's examples with their truth (e.g. (text, label), or (words, tags))."""

    def example_text(self, example) -> str:
        """The plain text of one example (verification, calibration and benchmark inputs)."""

    def evaluate_predictor(self, predictor, examples: list) -> dict[str, float]:
        """Quality of a loaded runtime bundle (`edgeft.runtime.Predictor`) on real examples, run in its own
        runtime; holds `metric` and `n` (examples scored)."""

    def distill_loss(self, student_logits, teacher_logits, labels, temperature: float, alpha: float):
        """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels), over this task's
        prediction units (texts, or labelled tokens with ignored positions masked)."""

    def write_figures(self, folder: Path, logits, label_ids, labels: list[str], split: str) -> list[str]:
        """Task-specific pictures for the run folder; returns their file names (for the model card)."""

    def card_table(self, metrics: dict) -> list[str]:
        """The model card's results table (markdown lines) from metrics.json."""
