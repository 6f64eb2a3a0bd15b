"""`edgeft predict` and `python -m edgeft.runtime predict`: run a bundle on texts given on the command line or stdin."""

from __future__ import annotations

import sys
from pathlib import Path

from edgeft.runtime import load


def predict_texts(bundle: str | Path, texts: list[str], threads: int | None = None, top_k: int = 1,
                  self_check: bool | str = True, as_json: bool = False) -> str:
    """Load a bundle, run it on texts and render the results in its task's words: JSON lines for machines, or
    readable lines (a sentence classifier: label, score and the `top_k` alternatives; a token classifier: the
    entities with their character offsets).

    Texts "-" means: read one text per line from stdin.
    """
    if list(texts) == ["-"]:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    predictor = load(bundle, threads=threads, self_check=self_check)
    return predictor.task.render(predictor.task.records(predictor, list(texts), top_k), as_json)
