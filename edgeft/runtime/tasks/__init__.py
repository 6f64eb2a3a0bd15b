"""The device half of each task: what a bundle's raw outputs mean, with numpy and `tokenizers` only.

Each module holds one task's `TASK` object; `edgeft.tasks` (the toolchain half) finds it under the same name.
A device task object has:
    name: the manifest's `task`.
    rows(outputs, attention_mask): the prediction rows of one batch's raw outputs, (rows, labels): one per text
        for a sentence classifier, one per real token for a token classifier. Verification, the load-time
        self-check and `Predictor.logits` compare these; row_counts(predictor, texts) says how many each text has.
    example_rows(outputs, attention_mask): the same rows per example (a vector per text, a matrix per tagged
        text), e.g. a teacher's targets stored beside each training row.
    predict(predictor, texts, **options): the results for people (labels, entities, ...).
    records(predictor, texts, top_k) / render(records): what `edgeft predict` prints (JSON lines or text).
A generating task (causal-lm) has instead `open(folder, manifest, threads, self_check)`: `edgeft.runtime.load`
returns what it opens (a `Generator`), since generation is a loop over the graph rather than one call.
"""

from __future__ import annotations

from edgeft.errors import EdgeftError
from edgeft.runtime.tasks import causal_lm, sequence_classification, token_classification

DEFAULT_TASK = sequence_classification.TASK.name
RUNTIME_TASKS = {
    "sequence-classification": sequence_classification.TASK,
    "token-classification": token_classification.TASK,
    "causal-lm": causal_lm.TASK,
}


def runtime_task(name: str | None):
    """The device half for a manifest's `task` (absent in bundles made before tasks existed: sentences)."""
    name = name or DEFAULT_TASK
    if name not in RUNTIME_TASKS:
        raise EdgeftError(f"task {name!r} is not one of {', '.join(RUNTIME_TASKS)}; a newer edgeft made this bundle")
    return RUNTIME_TASKS[name]
