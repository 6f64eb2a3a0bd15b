"""`edgeft predict` and `python -m edgeft.runtime predict`: classify texts given on the command line or stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgeft.errors import EdgeftError
from edgeft.runtime import load

# Control characters (newlines, tabs, terminal escape codes) would break the one-line-per-text plain output.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def predict_texts(
    bundle: str | Path, texts: list[str], threads: int | None = None, top_k: int = 1, self_check: bool | str = True
) -> list[dict]:
    """Load a bundle and classify texts; one record per text with its `top_k` labels and probabilities.

    Texts "-" means: read one text per line from stdin (UTF-8; blank lines skipped).

    Raises:
        EdgeftError: a bad --top-k or --threads, stdin that is not UTF-8 or holds no text, or a bad bundle.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise EdgeftError(f"--top-k: must be a positive integer (got {top_k!r})")
    if threads is not None and threads < 1:
        raise EdgeftError(f"--threads: must be a positive integer (got {threads!r})")
    if list(texts) == ["-"]:
        texts = read_stdin_texts()
    predictor = load(bundle, threads=threads, self_check=self_check)
    records = []
    for text, (label, score, probs) in zip(texts, predictor.predict(list(texts), probabilities=True)):
        order = np.argsort(-probs)[:top_k]
        top = [{"label": predictor.labels[i], "score": round(float(probs[i]), 6)} for i in order]
        records.append({"text": text, "label": label, "score": round(score, 6), "top": top})
    return records


def read_stdin_texts(stream=None) -> list[str]:
    """One text per non-blank line of stdin, decoded as UTF-8 with the offending line named."""
    stream = stream or sys.stdin.buffer
    texts = []
    for number, line in enumerate(stream, start=1):
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            bad = line[error.start : error.start + 1]
            raise EdgeftError(f"stdin: line {number}: not UTF-8 (byte {error.start}: {bad!r})") from None
        if text.strip():
            texts.append(text)
    if not texts:
        raise EdgeftError("stdin: no texts (expected one text per line)")
    return texts


def render(records: list[dict], as_json: bool) -> str:
    """JSON lines for machines, or `label  score  text` lines for people (control characters escaped)."""
    if as_json:
        return "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
    lines = []
    for record in records:
        alternatives = "".join(f"  ({escape(t['label'])} {t['score']:.3f})" for t in record["top"][1:])
        lines.append(f"{escape(record['label'])}\t{record['score']:.3f}\t{escape(record['text'])}{alternatives}")
    return "\n".join(lines)


def escape(text: str) -> str:
    """`text` with backslashes and control characters escaped, so it prints on one line and moves no cursor."""
    return text.replace("\\", "\\\\").translate(_ESCAPES)
