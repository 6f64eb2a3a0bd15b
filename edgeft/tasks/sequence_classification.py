"""Sentence (sequence) classification: one label per text, e.g. an intent classifier.

Rows are (text, label) columns of csv/json/jsonl/parquet files (`edgeft.data`); the head pools the encoder's states
the model's own way and applies a (cosine) linear head; the metrics are accuracy, macro-F1 and per-class scores.
"""

from __future__ import annotations

from pathlib import Path

from edgeft.runtime.tasks import sequence_classification as device


class SequenceClassification:
    name = "sequence-classification"
    metric = "accuracy"
    metric_scale = 1.0
    generates = False
    merged_loader = "edgeft.models.load_classifier"
    passes = ("prune", "vocab", "distill", "quantize")
    output_axes = ("batch", "labels")
    runtime = device.TASK

    @property
    def export_precisions(self) -> dict[str, tuple[str, ...]]:
        from edgeft.export import PRECISIONS

        return PRECISIONS

    def load_splits(self, spec, seed: int):
        from edgeft.data import load_splits

        return load_splits(spec, seed)

    def tokenize(self, split, tokenizer, max_length: int):
        from edgeft.training import tokenize

        return tokenize(split, tokenizer, max_length)

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def build_model(self, encoder, head_config):
        from edgeft.models import SequenceClassifier

        return SequenceClassifier(encoder, head_config)

    def compute_metrics(self, labels: list[str]):
        def accuracy(prediction) -> dict:
            return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

        return accuracy

    def split_metrics(self, logits, label_ids, split, labels: list[str]) -> dict:
        from edgeft.metrics import classification_metrics

        return classification_metrics(label_ids, logits.argmax(-1), labels)

    def examples(self, split, labels: list[str]) -> list[tuple[str, str]]:
        return [(text, labels[label]) for text, label in zip(split["text"], split["label"])]

    def example_text(self, example) -> str:
        return example[0]

    def evaluate_predictor(self, predictor, examples: list[tuple[str, str]], batch_size: int = 32) -> dict:
        """Accuracy and macro-F1 on (text, label) pairs.

        Raises:
            EdgeftError: a label in `examples` that the bundle does not know.
        """
        import numpy as np

        from edgeft.errors import EdgeftError
        from edgeft.metrics import classification_metrics

        index = {label: i for i, label in enumerate(predictor.labels)}
        unknown = sorted({label for _, label in examples} - set(index))
        if unknown:
            raise EdgeftError(f"labels not in the bundle: {', '.join(unknown[:10])}")
        truth = np.array([index[label] for _, label in examples])
        predicted = predictor.logits([text for text, _ in examples], batch_size).argmax(axis=1)
        metrics = classification_metrics(truth, predicted, predictor.labels)
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n": len(examples)}

    def distill_loss(self, student_logits, teacher_logits, labels, temperature: float, alpha: float):
        from torch.nn import functional as F

        soft = F.kl_div(
            F.log_softmax(student_logits / temperature, dim=-1),
            F.log_softmax(teacher_logits.to(student_logits.dtype) / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * temperature**2
        return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)

    def write_figures(self, folder: Path, logits, label_ids, labels: list[str], split: str) -> list[str]:
        from edgeft.run_report import plot_confusion

        plot_confusion(label_ids, logits.argmax(-1), labels, folder / "confusion.png", split)
        return ["confusion.png"]

    def card_table(self, metrics: dict) -> list[str]:
        return ["| split | accuracy | macro-F1 | rows |", "| --- | --- | --- | --- |"] + [
            f"| {split} | {metrics[split]['accuracy']:.4f} | {metrics[split]['macro_f1']:.4f} | "
            f"{metrics[split]['rows']} |"
            for split in ("validation", "test") if split in metrics
        ]


TASK = SequenceClassification()
