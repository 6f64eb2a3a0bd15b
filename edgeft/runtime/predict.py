"""`edgeft predict` and `python -m edgeft.runtime predict`: run a bundle on texts given on the command line or stdin."""

from __future__ import annotations

import sys
from pathlib import Path

from edgeft.errors import EdgeftError
from edgeft.runtime import load


def predict_texts(bundle: str | Path, texts: list[str], threads: int | None = None, top_k: int = 1,
                  self_check: bool | str = True, as_json: bool = False) -> str:
    """Load a bundle, run it on texts and render the results in its task's words: JSON lines for machines, or
    readable lines (a sentence classifier: label, score and the `top_k` alternatives; a token classifier: the
    entities with their character offsets), control characters escaped.

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
    return predictor.task.render(predictor.task.records(predictor, list(texts), top_k), as_json)


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
