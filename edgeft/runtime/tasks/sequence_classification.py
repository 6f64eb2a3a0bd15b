"""Sentence classification on the device: one row of logits per text -> (label, probability)."""

from __future__ import annotations

import json

import numpy as np

from edgeft.runtime.display import escape


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, stable for large logits."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class SequenceClassification:
    name = "sequence-classification"

    def rows(self, outputs: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return outputs

    def example_rows(self, outputs: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        return list(outputs)

    def row_counts(self, predictor, texts: list[str]) -> list[int]:
        return [1] * len(texts)

    def predict(self, predictor, texts: list[str], probabilities: bool = False, batch_size: int = 32) -> list[tuple]:
        """Top label and its probability per text; with `probabilities`, also the full vector (label order).

        Returns:
            [(label, score)] or [(label, score, probs)] with probs a numpy array over `predictor.labels`.
        """
        probs = softmax(predictor.logits(texts, batch_size))
        best = probs.argmax(axis=1)
        labels = predictor.labels
        if probabilities:
            return [(labels[i], float(p[i]), p) for i, p in zip(best, probs)]
        return [(labels[i], float(p[i])) for i, p in zip(best, probs)]

    def records(self, predictor, texts: list[str], top_k: int = 1) -> list[dict]:
        """One record per text with its `top_k` labels and probabilities."""
        records = []
        for text, (label, score, probs) in zip(texts, self.predict(predictor, texts, probabilities=True)):
            order = np.argsort(-probs)[:top_k]
            top = [{"label": predictor.labels[i], "score": round(float(probs[i]), 6)} for i in order]
            records.append({"text": text, "label": label, "score": round(score, 6), "top": top})
        return records

    def render(self, records: list[dict], as_json: bool) -> str:
        """JSON lines for machines, or `label  score  text` lines for people (control characters escaped)."""
        if as_json:
            return "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
        lines = []
        for record in records:
            alternatives = "".join(f"  ({escape(t['label'])} {t['score']:.3f})" for t in record["top"][1:])
            lines.append(f"{escape(record['label'])}\t{record['score']:.3f}\t{escape(record['text'])}{alternatives}")
        return "\n".join(lines)


TASK = SequenceClassification()
