"""`edgeft predict` and `python -m edgeft.runtime predict`: classify texts given on the command line or stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgeft.runtime import load


def predict_texts(
    bundle: str | Path, texts: list[str], threads: int | None = None, top_k: int = 1, self_check: bool | str = True
) -> list[dict]:
    """Load a bundle and classify texts; one record per text with its `top_k` labels and probabilities.

    Texts "-" means: read one text per line from stdin.
    """
    if list(texts) == ["-"]:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    predictor = load(bundle, threads=threads, self_check=self_check)
    records = []
    for text, (label, score, probs) in zip(texts, predictor.predict(texts, probabilities=True)):
        order = np.argsort(-probs)[:top_k]
        top = [{"label": predictor.labels[i], "score": round(float(probs[i]), 6)} for i in order]
        records.append({"text": text, "label": label, "score": round(score, 6), "top": top})
    return records


def render(records: list[dict], as_json: bool) -> str:
    """JSON lines for machines, or `label  score  text` lines for people."""
    if as_json:
        return "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
    lines = []
    for record in records:
        alternatives = "".join(f"  ({t['label']} {t['score']:.3f})" for t in record["top"][1:])
        lines.append(f"{record['label']}\t{record['score']:.3f}\t{record['text']}{alternatives}")
    return "\n".join(lines)
